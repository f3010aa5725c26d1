"""Clients of one Redis, plain or behind Sentinel, made from a RedisTarget (shared/config.py):
the only place that tells the two apart. With Sentinel, redis-py's own SentinelConnectionPool
asks the sentinels for the master on every new connection and drops a connection the old master
answers as a replica (READONLY), so every pool follows a failover without code of ours.
"""
from __future__ import annotations

import redis
from redis.sentinel import Sentinel, SentinelConnectionPool

from shared.config import RedisTarget


def target_of(where: RedisTarget | str) -> RedisTarget:
    """A URL alone is a plain Redis (the tests', a given `--redis-url` without Sentinel)."""
    return where if isinstance(where, RedisTarget) else RedisTarget(where)


def client(where: RedisTarget | str, **options) -> redis.Redis:
    """A client of the master: `options` are redis-py's connection options (timeouts, decoding)."""
    target = target_of(where)
    if not target.sentinel:
        return redis.Redis.from_url(target.url, **options)
    sentinel_options = {key: value for key, value in target.transport_options()["sentinel_kwargs"].items()}
    sentinels = Sentinel(target.sentinels, sentinel_kwargs=sentinel_options)
    return sentinels.master_for(target.sentinel_master, password=target.password, db=target.db, **options)


def undecoded(client: redis.Redis) -> redis.Redis:
    """A client of the same Redis with the same options that returns bytes (the audio pieces)."""
    pool = client.connection_pool
    kwargs = dict(pool.connection_kwargs, decode_responses=False)
    if isinstance(pool, SentinelConnectionPool):
        kwargs.pop("connection_pool", None)  # the pool's own proxy, which the new pool makes anew
        return redis.Redis(connection_pool=SentinelConnectionPool(
            pool.service_name, pool.sentinel_manager, is_master=pool.is_master, **kwargs))
    return redis.Redis(connection_pool=type(pool)(connection_class=pool.connection_class, **kwargs))
