"""The result cache's index: which job's audio answers a request digest (worker/cache.py keys it)."""
from __future__ import annotations

from shared.store import keyspace


class CacheStore:
    def __init__(self, client):
        self.client = client

    def source(self, digest: str) -> str | None:
        return self.client.get(keyspace.cache(digest))

    def remember(self, digest: str, job_id: str, ttl_s: int) -> None:
        self.client.set(keyspace.cache(digest), job_id, ex=ttl_s)
