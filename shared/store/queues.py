"""The broker's queue depths, read from kombu's Redis lists (for metrics and `voxq status`)."""
from __future__ import annotations

import base64
import json
from typing import NamedTuple

from shared.store import keyspace


class Taken(NamedTuple):
    """A message a worker has taken and not yet acknowledged: a task in flight."""

    task: str
    first_arg: str
    queue: str

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

    def in_flight(self) -> list[Taken]:
        """Messages taken by a worker and not yet acknowledged (read-only; kombu owns the hash)."""
        found = []
        for raw in self.client.hvals(keyspace.BROKER_UNACKED):
            try:
                message, _exchange, routing_key = json.loads(raw)
                args = json.loads(base64.b64decode(message["body"]))[0] if message.get("body") else []
                first = args[0] if args and isinstance(args[0], str) else "?"
                found.append(Taken((message.get("headers") or {}).get("task", "?"), first, routing_key))
            except (ValueError, TypeError, KeyError, IndexError):
                continue  # not a message of ours: say nothing rather than guess
        return found

    def renew(self, delivery_tags, now: float) -> int:
        """Mark messages this worker still holds as delivered `now`, so kombu does not hand them
        to another worker; XX: a message acknowledged meanwhile is not brought back."""
        tags = list(delivery_tags)
        if not tags:
            return 0
        return int(self.client.zadd(keyspace.BROKER_UNACKED_INDEX, {tag: now for tag in tags}, xx=True, ch=True))
