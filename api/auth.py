"""Who is calling, and how much they may ask: Bearer API keys, tenants, per-key limits in Redis.

Without any key configured every caller is the one 'anonymous' tenant, with no limits: that is
only for a service bound to loopback. With keys, every /v1 request needs
`Authorization: Bearer <key>`; its tenant owns the jobs it creates. Limits count in Redis, so
every API process of the cluster shares them.
"""
from __future__ import annotations

import math
import os
from datetime import datetime, timedelta, timezone

from flask import Flask, current_app, g, request

from api import services
from api.errors import ApiError
from shared.keys import ANONYMOUS, KeyRing, KeySource

# The environment names the auth and webhook code read; a test's config dict may set them too.
ENV_NAMES = (
    "VOXQ_API_KEYS", "VOXQ_API_KEYS_FILE", "VOXQ_WEBHOOK_SECRETS_FILE", "VOXQ_RATE_LIMIT_PER_MINUTE",
    "VOXQ_CHARS_PER_DAY", "VOXQ_WEBHOOK_ALLOW_NETWORKS", "VOXQ_WEBHOOK_PORTS", "VOXQ_WEBHOOK_RETRY_SCHEDULE",
)

# Generic cell rate algorithm: a burst of up to `limit` requests, then one per period/limit.
# One key per tenant holding the theoretical arrival time; the answer is how long to wait (ms).
_RATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local period = tonumber(ARGV[1])
local interval = math.max(1, math.floor(period / tonumber(ARGV[2])))
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - period > now then return new_tat - period - now end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return 0
"""

# Characters per UTC day: add only if the sum stays within the limit; the answer is the new sum,
# or -1 when refused.
_CHARS = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return -1 end
used = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], 172800)
return used
"""


def config_environ(app: Flask) -> dict[str, str]:
    """The process environment, with the test config's values for the names above on top."""
    env = dict(os.environ)
    env.update({name: str(app.config[name]) for name in ENV_NAMES if app.config.get(name) is not None})
    return env


def init_app(app: Flask) -> None:
    # Reading the key files here makes a malformed file stop the start-up, not a later request.
    app.extensions["voxq.keys"] = KeySource(config_environ(app))
    app.before_request(_guard)


def keyring() -> KeyRing:
    return current_app.extensions["voxq.keys"].current()


def _guard():
    # Every programmatic entry point counts against the key's rate: the job API, the OpenAI
    # speech call under /v1, and the seed's /tts.
    if not (request.path == "/v1" or request.path.startswith("/v1/") or request.path == "/tts"):
        return None
    tenant = keyring().tenant(owner())
    if tenant.requests_per_minute:
        wait_ms = services.get().store.redis.eval(
            _RATE, 1, f"voxq:rate:{tenant.name}", 60_000, tenant.requests_per_minute)
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
    ring = keyring()
    if not ring.configured:
        return ANONYMOUS
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
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
    used = services.get().store.redis.eval(_CHARS, 1, f"voxq:chars:{owner}:{today:%Y-%m-%d}", chars, limit)
    if int(used) < 0:
        midnight = datetime.combine(today.date() + timedelta(days=1), datetime.min.time(), timezone.utc)
        raise ApiError(429, "chars_per_day_exceeded",
                       f"this job would take the key past its {limit} characters for today (UTC)",
                       headers={"Retry-After": str(max(1, math.ceil((midnight - today).total_seconds())))})
