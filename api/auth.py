"""Who is calling, and how much they may ask: Bearer API keys, tenants, per-key limits in Redis.

Without any key configured every caller is the one 'anonymous' tenant, with no limits: that is
only for a service bound to loopback. With keys, every /v1 request needs
`Authorization: Bearer <key>`; its tenant owns the jobs it creates. Limits count in Redis, so
every API process of the cluster shares them.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from flask import Flask, g, request

from api import services
from api.errors import ApiError
from shared.keys import ANONYMOUS, KeyRing

# voxq's live sessions (api/live.py) authenticate and count themselves.
LIVE_PATH = "/v1/live"


def init_app(app: Flask) -> None:
    app.before_request(_guard)


def keyring() -> KeyRing:
    return services.get().keys.current()


def _guard():
    # Every programmatic entry point counts against the key's rate: the job API, the OpenAI
    # speech call under /v1, and the seed's /tts.
    if not (request.path == "/v1" or request.path.startswith("/v1/") or request.path == "/tts"):
        return None
    if request.path == LIVE_PATH:
        return None  # a WebSocket: its key may come in its first message (browsers send no headers)
    tenant = keyring().tenant(owner())
    if tenant.requests_per_minute:
        wait_ms = services.get().store.limits.wait_ms(tenant.name, tenant.requests_per_minute)
        if wait_ms:
            raise ApiError(429, "rate_limited",
                           f"more than {tenant.requests_per_minute} requests per minute; retry later",
                           headers={"Retry-After": str(max(1, math.ceil(int(wait_ms) / 1000)))})
    return None


def owner() -> str:
    """The caller's tenant; raises 401 when keys are configured and the request has no valid one."""
    if "voxq_owner" not in g:
        g.voxq_owner = _authenticate()
    return g.voxq_owner


def _authenticate() -> str:
    return tenant_for_key(bearer_key())


def bearer_key() -> str | None:
    """The key of the request's `Authorization: Bearer` header, if it has one."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None


def tenant_for_key(key: str | None) -> str:
    """The tenant of an API key (from a header, or a live session's first message); 401 without
    a valid one when keys are configured."""
    ring = keyring()
    if not ring.configured:
        return ANONYMOUS
    if not key:
        raise ApiError(401, "unauthorized", "an API key is required: send Authorization: Bearer <key>",
                       headers={"WWW-Authenticate": 'Bearer realm="voxq"'})
    tenant = ring.tenant_for_key(key)
    if tenant is None:
        raise ApiError(401, "unauthorized", "the API key is not valid",
                       headers={"WWW-Authenticate": 'Bearer realm="voxq", error="invalid_token"'})
    return tenant.name


def charge(owner: str, chars: int) -> None:
    """Count characters against the caller's daily limit; 429 (or 413 for a job bigger than a
    whole day's allowance) when it would go past it."""
    limit = keyring().tenant(owner).chars_per_day
    if not limit:
        return
    if chars > limit:
        raise ApiError(413, "text_too_long",
                       f"text has {chars} characters; this key may submit {limit} characters a day", "text")
    today = datetime.now(timezone.utc)
    if not services.get().store.limits.add_chars(owner, f"{today:%Y-%m-%d}", chars, limit):
        midnight = datetime.combine(today.date() + timedelta(days=1), datetime.min.time(), timezone.utc)
        raise ApiError(429, "chars_per_day_exceeded",
                       f"this job would take the key past its {limit} characters for today (UTC)",
                       headers={"Retry-After": str(max(1, math.ceil((midnight - today).total_seconds())))})
