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
