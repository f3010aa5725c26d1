"""Cluster-wide locks that expire on their own (one retention sweep per period, whoever is first)."""
from __future__ import annotations

from shared.store import keyspace


class LockStore:
    def __init__(self, client):
        self.client = client

    def take(self, name: str, holder: str, ttl_s: int) -> bool:
        return bool(self.client.set(keyspace.lock(name), holder, nx=True, ex=max(1, int(ttl_s))))
