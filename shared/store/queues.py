"""The broker's queue depths, read from kombu's Redis lists (for metrics and `voxq status`)."""
from __future__ import annotations

from shared.store import keyspace

_PRIORITIES = range(10)  # kombu's Redis transport: 0 plus one list per priority 1-9


class QueueStats:
    def __init__(self, client):
        self.client = client

    def depths(self, queues) -> dict[str, int]:
        queues = list(queues)
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            for priority in _PRIORITIES:
                pipe.llen(keyspace.broker_queue(queue, priority))
        lengths = pipe.execute()
        n = len(_PRIORITIES)
        return {queue: sum(lengths[i * n:(i + 1) * n]) for i, queue in enumerate(queues)}

    def oldest(self, queues) -> dict[str, list[str]]:
        """The oldest waiting message of each priority list of each queue (kombu pushes on the
        left, so the oldest is the last item)."""
        queues = list(queues)
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            for priority in _PRIORITIES:
                pipe.lindex(keyspace.broker_queue(queue, priority), -1)
        tails = pipe.execute()
        n = len(_PRIORITIES)
        return {queue: [t for t in tails[i * n:(i + 1) * n] if t] for i, queue in enumerate(queues)}

    def memory(self) -> tuple[int, int]:
        """(bytes Redis uses, its maxmemory; 0 is no limit)."""
        info = self.client.info("memory")
        return int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
