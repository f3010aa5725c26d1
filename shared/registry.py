"""Which workers are alive and what their engines can do, as the workers registered it."""
from __future__ import annotations

import json
import time

import redis

WORKERS = "voxq:workers"  # zset: worker name -> last heartbeat (unix time)
ENGINES = "voxq:engines"  # hash: engine name -> capabilities JSON
QUEUES = "voxq:worker-queues"  # hash: worker name -> JSON list of queues it consumes


def beat(client: redis.Redis, name: str, caps: dict | None, queues: list[str], ttl_s: int) -> None:
    now = time.time()
    pipe = client.pipeline(transaction=False)
    pipe.zadd(WORKERS, {name: now})
    pipe.hset(QUEUES, name, json.dumps(queues))
    if caps:
        pipe.hset(ENGINES, caps["engine"], json.dumps(caps))
    # Forget workers silent for ten heartbeats, so the set does not grow forever.
    pipe.zremrangebyscore(WORKERS, "-inf", now - 10 * ttl_s)
    pipe.execute()


def alive(client: redis.Redis, ttl_s: int) -> list[str]:
    return client.zrangebyscore(WORKERS, time.time() - ttl_s, "+inf")


def alive_synthesis(client: redis.Redis, ttl_s: int) -> list[str]:
    """Live workers that consume a synthesis queue (a webhooks-only worker does not count)."""
    from shared.tasks import SYNTHESIS_QUEUES

    names = alive(client, ttl_s)
    if not names:
        return []
    return [name for name, raw in zip(names, client.hmget(QUEUES, names))
            if raw and set(json.loads(raw)) & set(SYNTHESIS_QUEUES)]


def alive_queues(client: redis.Redis, ttl_s: int) -> set[str]:
    names = alive(client, ttl_s)
    if not names:
        return set()
    queues: set[str] = set()
    for raw in client.hmget(QUEUES, names):
        if raw:
            queues.update(json.loads(raw))
    return queues


def engines(client: redis.Redis) -> list[dict]:
    return [json.loads(v) for _, v in sorted(client.hgetall(ENGINES).items())]
