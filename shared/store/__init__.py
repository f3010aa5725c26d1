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
- `lexicons`: pronunciation lexicons and default lexicons per tenant;
- `sessions`: live sessions' leases (open per tenant, and those whose API process died).
"""
from __future__ import annotations

import redis

from shared.config import RedisTarget
from shared.store.cache import CacheStore
from shared.store.chunks import ChunkStore
from shared.store.connection import client as _client, target_of
from shared.store import keyspace
from shared.store.idempotency import IdempotencyStore
from shared.store.jobs import JobStore
from shared.store.lexicons import LexiconStore
from shared.store.limits import LimitStore
from shared.store.locks import LockStore
from shared.store.pieces import PieceStore
from shared.store.queues import QueueStats
from shared.store.sessions import SessionStore
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
# NOREPLICAS: a master with min-replicas-to-write set and too few replicas in reach.
_REFUSALS = ("MISCONF", "OOM", "NOREPLICAS")


class StaleMaster(redis.ConnectionError):
    """A master behind Sentinel answers NOREPLICAS: it lost touch with its replicas (it was cut
    off, and has been replaced, or is about to be). A ConnectionError, so redis-py drops the
    connection and its Sentinel pool asks the sentinels for the master again, as it does on the
    READONLY of a master already demoted."""


def _stale_masters_reconnect() -> None:
    # redis-py has no public hook for this: its table of reply codes is it.
    from redis._parsers.base import BaseParser

    if BaseParser.EXCEPTION_CLASSES.get("NOREPLICAS") is None:
        BaseParser.EXCEPTION_CLASSES["NOREPLICAS"] = StaleMaster


def refusals_are_outages() -> None:
    """Make a Redis that refuses writes raise WritesRefused, a ConnectionError, in this process
    and the ones it forks: then kombu's and Celery's consumers reconnect and wait, as they do for
    a Redis that is down, instead of exiting on an "unrecoverable" ResponseError, and our tasks
    wait it out (worker/tasks.py). For workers and Flower, which must outlive it; the API answers
    503 at once either way. redis-py has no public hook for this: its table of reply codes is it."""
    from redis._parsers.base import BaseParser

    for code in _REFUSALS:
        BaseParser.EXCEPTION_CLASSES[code] = WritesRefused


def write_problem(where: RedisTarget | str) -> str | None:
    """Why Redis at `where` cannot take writes now (down, full disk, maxmemory, no master), or
    None: for a supervisor deciding whether a child that keeps dying is broken or is waiting for Redis."""
    try:
        client = _client(where, socket_connect_timeout=1, socket_timeout=2, decode_responses=True)
    except ValueError as exc:
        return f"Redis does not answer ({exc.__class__.__name__})"
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


def connect(where: RedisTarget | str) -> redis.Redis:
    # Short timeouts: when Redis is down the API must answer 503 at once, not hang. The read
    # timeout stays above the longest wait for replicas (VOXQ_REDIS_WAIT_TIMEOUT_MS, at most 4 s).
    target = target_of(where)
    if target.sentinel:
        _stale_masters_reconnect()
    return _client(target, socket_connect_timeout=1, socket_timeout=5, health_check_interval=30,
                   decode_responses=True)


def answers(where: RedisTarget | str) -> bool:
    """Whether Redis (its master, with Sentinel) answers at `where` (for `voxq up`, before
    anything else starts)."""
    try:
        return bool(_client(where, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, ValueError):
        return False


class Store:
    """Every Redis-backed store of one process, over one connection pool."""

    def __init__(self, client: redis.Redis, result_ttl_s: int, wait_replicas: int = 0, wait_timeout_ms: int = 1000):
        self.client = client
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
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
        self.sessions = SessionStore(client)

    @classmethod
    def open(cls, where: RedisTarget | str, result_ttl_s: int) -> "Store":
        target = target_of(where)
        return cls(connect(target), result_ttl_s, target.replicas_to_wait, target.wait_timeout_ms)

    def ping(self) -> bool:
        return bool(self.client.ping())

    def master_address(self) -> tuple[str, int] | None:
        """Where the sentinels say the master is now; None for a plain Redis."""
        pool = self.client.connection_pool
        return pool.get_master_address() if hasattr(pool, "get_master_address") else None

    def server_info(self, section: str) -> dict:
        """The master's INFO section (its replicas, its process), for `voxq bench ha`."""
        return self.client.info(section)

    def replicated(self) -> bool:
        """Whether every write made so far (by any connection of any process) has reached
        `wait_replicas` replicas, waiting up to `wait_timeout_ms`: the step before voxq tells
        anyone a write happened (a 202, a chunk that landed). Redis replicates asynchronously, so
        without it a master lost right after a write takes the write along. True at once when no
        wait is asked (a plain Redis without replicas).

        WAIT counts the writes of its own connection only: a write of ours first, on the same
        connection (one pipeline), makes its offset the latest, which covers all earlier ones."""
        if not self.wait_replicas:
            return True
        pipe = self.client.pipeline(transaction=False)
        pipe.set(keyspace.REPLICA_PROBE, "1", px=60_000)
        pipe.wait(self.wait_replicas, self.wait_timeout_ms)
        _, copies = pipe.execute()
        return int(copies) >= self.wait_replicas
