"""Which workers are alive, what they consume, and what their engines can do."""
from __future__ import annotations

import json
import time

from shared import tasks
from shared.store import keyspace


class WorkerRegistry:
    def __init__(self, client):
        self.client = client

    def beat(self, name: str, caps: dict | None, queues: list[str], ttl_s: int) -> None:
        now = time.time()
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(keyspace.WORKERS, {name: now})
        pipe.hset(keyspace.WORKER_QUEUES, name, json.dumps(queues))
        if caps:
            pipe.hset(keyspace.ENGINES, caps["engine"], json.dumps(caps))
        pipe.execute()
        # Forget workers silent for ten heartbeats, with the queues they consumed: one entry per
        # process ever started would otherwise pile up (each restart is a new pid).
        gone = self.client.zrangebyscore(keyspace.WORKERS, "-inf", now - 10 * ttl_s)
        if gone:
            self.leave(*gone)

    def leave(self, *names: str) -> None:
        """A worker process stopping says so: /readyz need not wait out its heartbeat."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zrem(keyspace.WORKERS, *names)
        pipe.hdel(keyspace.WORKER_QUEUES, *names)
        pipe.execute()

    def alive(self, ttl_s: int) -> list[str]:
        return self.client.zrangebyscore(keyspace.WORKERS, time.time() - ttl_s, "+inf")

    def queues_of(self, names: list[str]) -> dict[str, list[str]]:
        if not names:
            return {}
        return {name: json.loads(raw) for name, raw in zip(names, self.client.hmget(keyspace.WORKER_QUEUES, names))
                if raw}

    def alive_consuming(self, ttl_s: int, queues) -> list[str]:
        """Live workers that consume any of `queues` (a webhooks-only worker is not a synthesis one)."""
        wanted = set(queues)
        return [name for name, consumed in self.queues_of(self.alive(ttl_s)).items() if set(consumed) & wanted]

    def alive_queues(self, ttl_s: int) -> set[str]:
        found: set[str] = set()
        for consumed in self.queues_of(self.alive(ttl_s)).values():
            found.update(consumed)
        return found

    def queue_for(self, priority: str, ttl_s: int) -> str:
        """Where work of this priority goes now: the one routing rule (shared/tasks.py) applied to
        the queues live workers consume."""
        return tasks.route(priority, self.alive_queues(ttl_s))

    def engines(self) -> list[dict]:
        return [json.loads(v) for _, v in sorted(self.client.hgetall(keyspace.ENGINES).items())]
