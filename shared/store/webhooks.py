"""Webhook delivery state outside the job record: per-attempt claims, and URLs a 410 disabled."""
from __future__ import annotations

import hashlib

from shared.store import keyspace


def url_digest(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


class WebhookStore:
    def __init__(self, client):
        self.client = client

    def is_disabled(self, owner: str, url: str) -> bool:
        return bool(self.client.sismember(keyspace.webhook_disabled(owner), url_digest(url)))

    def disable(self, owner: str, url: str) -> None:
        self.client.sadd(keyspace.webhook_disabled(owner), url_digest(url))

    def enable(self, owner: str, url: str) -> None:
        self.client.srem(keyspace.webhook_disabled(owner), url_digest(url))

    def claim_attempt(self, job_id: str, generation: int, attempt: int, ttl_s: int) -> bool:
        """Take attempt N of a delivery; False if a redelivered message already took it."""
        key = keyspace.webhook_attempt(job_id, generation, attempt)
        return bool(self.client.set(key, "running", nx=True, ex=max(1, int(ttl_s))))

    def record_attempt(self, job_id: str, generation: int, attempt: int, outcome: str, ttl_s: int) -> None:
        self.client.set(keyspace.webhook_attempt(job_id, generation, attempt), outcome, ex=max(1, int(ttl_s)))
