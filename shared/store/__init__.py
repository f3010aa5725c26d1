"""The one owner of Redis: a connection, and small stores that own every key and script.

No module outside this package imports `redis` or calls a client (tests/test_layout.py checks
this by reading the code). Callers hold a `Store` and use its parts:

- `jobs`: job records, text, the owner index, status transitions, progress, webhook state;
- `chunks`: a job's plan, which chunks landed, and the per-tenant dispatch of the next ones;
- `pieces`: a job's first chunk as it is spoken, for streams;
- `limits`: requests per minute and characters per day per tenant;
- `idempotency`: Idempotency-Key records;
- `cache`: which earlier job answers an identical request;
- `webhooks`: delivery claims and URLs disabled by a 410;
- `workers`: heartbeats, the queues and engines of live workers;
- `locks`: cluster-wide locks (the retention sweep);
- `queues`: the broker's queue depths;
- `lexicons`: pronunciation lexicons and default lexicons per tenant.
"""
from __future__ import annotations

import redis

from shared.store.cache import CacheStore
from shared.store.chunks import ChunkStore
from shared.store.idempotency import IdempotencyStore
from shared.store.jobs import JobStore
from shared.store.lexicons import LexiconStore
from shared.store.limits import LimitStore
from shared.store.locks import LockStore
from shared.store.pieces import PieceStore
from shared.store.queues import QueueStats
from shared.store.webhooks import WebhookStore
from shared.store.workers import WorkerRegistry

# What callers catch, without importing redis themselves.
Unavailable = redis.RedisError
# The subset worth retrying: the connection dropped or timed out (not a script or data error).
Transient = (redis.ConnectionError, redis.TimeoutError)


def connect(url: str) -> redis.Redis:
    # Short timeouts: when Redis is down the API must answer 503 at once, not hang.
    return redis.Redis.from_url(
        url, socket_connect_timeout=1, socket_timeout=5, health_check_interval=30, decode_responses=True
    )


def answers(url: str) -> bool:
    """Whether a Redis server answers at `url` (for `voxq up`, before anything else starts)."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, ValueError):
        return False


class Store:
    """Every Redis-backed store of one process, over one connection pool."""

    def __init__(self, client: redis.Redis, result_ttl_s: int):
        self.client = client
        self.jobs = JobStore(client, result_ttl_s)
        self.chunks = ChunkStore(client)
        self.pieces = PieceStore(client)
        self.limits = LimitStore(client)
        self.idempotency = IdempotencyStore(client)
        self.cache = CacheStore(client)
        self.webhooks = WebhookStore(client)
        self.workers = WorkerRegistry(client)
        self.locks = LockStore(client)
        self.queues = QueueStats(client)
        self.lexicons = LexiconStore(client)

    @classmethod
    def open(cls, url: str, result_ttl_s: int) -> "Store":
        return cls(connect(url), result_ttl_s)

    def ping(self) -> bool:
        return bool(self.client.ping())
