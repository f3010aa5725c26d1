"""Idempotency-Key records: which job a key was first used for, and with what body."""
from __future__ import annotations

import hashlib
import json

from shared.store import keyspace


class IdempotencyStore:
    def __init__(self, client):
        self.client = client

    @staticmethod
    def _key(owner: str, key: str) -> str:
        return keyspace.idempotency(owner, hashlib.sha256(key.encode()).hexdigest())

    def get(self, owner: str, key: str) -> tuple[str, str] | None:
        """(body digest, job ID) the key was first used with, or None."""
        raw = self.client.get(self._key(owner, key))
        if not raw:
            return None
        stored = json.loads(raw)
        return stored["body"], stored["job"]

    def remember(self, owner: str, key: str, body_digest: str, job_id: str, ttl_s: int) -> bool:
        """Record the key for this job; False if another request recorded it first."""
        value = json.dumps({"body": body_digest, "job": job_id})
        return bool(self.client.set(self._key(owner, key), value, nx=True, ex=ttl_s))
