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
from shared.store import keyspace
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


class WritesRefused(redis.ConnectionError):
    """Redis answers but takes no writes: it cannot write its append-only file or snapshot
    (MISCONF: its disk is full) or it is at maxmemory (OOM). For a worker that is an outage like
    a Redis that is down, which passes once there is room again: see `refusals_are_outages`."""


# The subset worth retrying: the connection dropped or timed out, or Redis refuses writes for now
# (not a script or data error).
Transient = (redis.ConnectionError, redis.TimeoutError)

# The replies of a Redis that refuses writes, by their error code.
_REFUSALS = ("MISCONF", "OOM")


def refusals_are_outages() -> None:
    """Make a Redis that refuses writes raise WritesRefused, a ConnectionError, in this process
    and the ones it forks: then kombu's and Celery's consumers reconnect and wait, as they do for
    a Redis that is down, instead of exiting on an "unrecoverable" ResponseError, and our tasks
    wait it out (worker/tasks.py). For workers and Flower, which must outlive it; the API answers
    503 at once either way. redis-py has no public hook for this: its table of reply codes is it."""
    from redis._parsers.base import BaseParser

    for code in _REFUSALS:
        BaseParser.EXCEPTION_CLASSES[code] = WritesRefused


def write_problem(url: str) -> str | None:
    """Why Redis at `url` cannot take writes now (down, full disk, maxmemory), or None: for a
    supervisor deciding whether a child that keeps dying is broken or is waiting for Redis."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2, decode_responses=True)
    try:
        client.set(keyspace.WRITE_PROBE, "1", px=1000)
    except redis.ResponseError as exc:
        if str(exc).split(" ", 1)[0] in _REFUSALS or isinstance(exc, redis.exceptions.OutOfMemoryError):
            return f"Redis refuses writes ({str(exc)[:80]})"
        return None
    except WritesRefused as exc:
        return f"Redis refuses writes ({str(exc)[:80]})"
    except (redis.RedisError, ValueError) as exc:
        return f"Redis does not answer ({exc.__class__.__name__})"
    finally:
        client.close()
    return None


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
