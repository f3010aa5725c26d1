"""Webhook delivery: Standard Webhooks v1, signed, retried on its own queue, SSRF-checked again.

A delivery worker consumes only the `webhooks` queue (`-Q webhooks --pool threads`), so a slow
receiver never holds a synthesis worker. Each attempt resolves and checks the callback URL again
and connects to the address it checked, with the URL's host only in the Host header and TLS SNI.

Retries use Celery's own `retry(countdown=...)`. With the Redis broker a countdown longer than the
visibility timeout can be handed out twice, so each attempt first claims its number in Redis and
a second copy of the same attempt does nothing.
"""
from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from datetime import timedelta

import urllib3
from celery import shared_task
from urllib3.exceptions import HTTPError

from shared import callbacks, tasks
from shared.jobs import WebhookState, job_view, now
from shared.keys import KeySource, secret_bytes
from worker import context, metrics

log = logging.getLogger(__name__)

USER_AGENT = "voxq-webhooks/1"
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Config:
    policy: callbacks.Policy
    schedule: tuple[float, ...]
    timeout_s: float
    keys: KeySource

    @classmethod
    def from_env(cls, environ=None) -> "Config":
        env = os.environ if environ is None else environ
        timeout = float(env.get("VOXQ_WEBHOOK_TIMEOUT_S") or 12)
        if not 1 <= timeout <= 60:
            raise ValueError("VOXQ_WEBHOOK_TIMEOUT_S must be between 1 and 60 seconds")
        return cls(callbacks.Policy.from_env(env), tuple(callbacks.retry_schedule(env)), timeout, KeySource(env))


_config: Config | None = None


def config() -> Config:
    global _config
    if _config is None:
        _config = Config.from_env()
    return _config


def notify(store, job_id: str) -> None:
    """Queue the webhook of a job this worker just finished. Never raises: the job is done."""
    try:
        callbacks.publish(deliver_webhook.app, store, job_id, callbacks.retry_schedule(os.environ)[0])
    except Exception:  # noqa: BLE001 - a lost webhook can be redelivered; a failed job cannot be undone
        log.exception("job %s: could not queue its webhook", job_id)


def sign(secrets: tuple[str, ...], webhook_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: one `v1,<base64>` per secret, space-separated."""
    message = f"{webhook_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(secret_bytes(s), message, hashlib.sha256).digest()).decode()
        for s in secrets
    )


class NetworkError(Exception):
    pass


def post(target: callbacks.Target, body: bytes, headers: dict, timeout_s: float) -> urllib3.BaseHTTPResponse:
    """POST to the checked addresses in turn, never following a redirect, never resolving again."""
    headers = {"Host": target.host_header, **headers}
    timeout = urllib3.Timeout(total=timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s))
    last: Exception | None = None
    for address in target.addresses:
        if target.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(
                address, target.port, timeout=timeout, retries=False, maxsize=1,
                cert_reqs="CERT_REQUIRED", server_hostname=target.host, assert_hostname=target.host,
            )
        else:
            pool = urllib3.HTTPConnectionPool(address, target.port, timeout=timeout, retries=False, maxsize=1)
        try:
            response = pool.urlopen("POST", target.path, body=body, headers=headers, redirect=False,
                                    retries=False, preload_content=False, assert_same_host=False)
            # Only the status and headers matter; a body is never read, so a receiver that drips
            # one cannot hold a delivery thread.
            response.close()
            return response
        except urllib3.exceptions.NewConnectionError as exc:
            last = exc  # this address refused; try the next one the host resolved to
        except HTTPError as exc:
            raise NetworkError(f"{exc.__class__.__name__}: {exc}") from None
        finally:
            pool.close()
    raise NetworkError(f"could not connect: {last}")


def retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time()) if when.tzinfo else None


_CLAIM = "voxq:webhook-attempt:{job}:{gen}:{attempt}"


@shared_task(bind=True, name=tasks.DELIVER_WEBHOOK, acks_late=True, ignore_result=True, max_retries=None)
def deliver_webhook(self, job_id: str, webhook_id: str, generation: int = 0) -> str:
    cfg = config()
    store = context.store()
    attempt = self.request.retries
    claim = _CLAIM.format(job=job_id, gen=generation, attempt=attempt)
    if not store.redis.set(claim, "running", nx=True, ex=int(cfg.timeout_s * 2 + 60)):
        return "duplicate"
    outcome, retry_in = _attempt(cfg, store, job_id, webhook_id, generation, attempt)
    store.redis.set(claim, outcome, ex=int(max(cfg.schedule) * 2 + 86400))
    metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
    if retry_in is not None:
        raise self.retry(countdown=retry_in, argsrepr="(hidden)", kwargsrepr="{}")
    return outcome


def _attempt(cfg: Config, store, job_id: str, webhook_id: str, generation: int, attempt: int):
    """One delivery attempt: (outcome, seconds until the next attempt or None)."""
    fields = store.redis.hmget(store.job_key(job_id), "webhook_gen", "webhook_id")
    record = store.get(job_id)
    if record is None or not record.callback_url:
        return "gone", None
    if (fields[0] is not None and int(fields[0]) != generation) or fields[1] not in (None, webhook_id):
        return "superseded", None  # a redelivery took over
    state = record.webhook or WebhookState()
    state = state.model_copy(update={"attempts": state.attempts + 1, "status": "delivering",
                                     "next_attempt_at": None})

    def finish(status: str, code: int | None = None, outcome: str | None = None):
        callbacks.save_state(store, job_id, state.model_copy(update={"status": status, "last_status_code": code}))
        return outcome or status, None

    if callbacks.is_disabled(store.redis, record.owner, record.callback_url):
        # Not an attempt: the receiver said 410 Gone to this key before.
        state = state.model_copy(update={"attempts": state.attempts - 1})
        return finish("disabled", state.last_status_code)
    secrets = cfg.keys.current().secrets_for(record.owner)
    if not secrets:
        log.error("job %s: no webhook secret for tenant %s; not sent", job_id, record.owner)
        return finish("failed", None, "no_secret")
    try:
        target = callbacks.check(record.callback_url, cfg.policy)
    except callbacks.CallbackError as exc:
        log.warning("job %s: webhook refused: %s", job_id, exc.message)
        if exc.transient:
            return _retry(cfg, store, job_id, state, attempt, None, None)
        return finish("failed", None, "blocked")

    callbacks.save_state(store, job_id, state)
    record = record.model_copy(update={"webhook": state})
    body = json.dumps({
        "type": f"job.{record.status}",
        "timestamp": (record.finished_at or now()).isoformat().replace("+00:00", "Z"),
        "data": job_view(record).model_dump(mode="json"),
    }, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    timestamp = int(time.time())  # of this attempt: receivers reject signatures older than minutes
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secrets, webhook_id, timestamp, body),
    }
    try:
        response = post(target, body, headers, cfg.timeout_s)
    except NetworkError as exc:
        log.info("job %s: webhook attempt %d failed: %s", job_id, attempt + 1, exc)
        return _retry(cfg, store, job_id, state, attempt, None, None)
    code = response.status
    if 200 <= code < 300:
        log.info("job %s: webhook delivered (%d) on attempt %d", job_id, code, attempt + 1)
        return finish("delivered", code)
    if code == 410:
        store.redis.sadd(callbacks.disabled_key(record.owner), callbacks.url_digest(record.callback_url))
        log.warning("job %s: receiver answered 410 Gone; its URL is disabled for tenant %s", job_id, record.owner)
        return finish("disabled", code)
    if code == 429 or code >= 500:
        return _retry(cfg, store, job_id, state, attempt, code, retry_after_s(response.headers.get("Retry-After")))
    # A redirect, or a 4xx that will not change by asking again: redirects are never followed,
    # because the place they point to was never checked.
    log.warning("job %s: webhook answered %d; not retried", job_id, code)
    return finish("failed", code)


def _retry(cfg: Config, store, job_id: str, state: WebhookState, attempt: int, code: int | None,
           retry_after: float | None):
    if attempt + 1 >= len(cfg.schedule):
        callbacks.save_state(store, job_id, state.model_copy(update={"status": "failed", "last_status_code": code}))
        log.warning("job %s: webhook given up after %d attempts", job_id, attempt + 1)
        return "failed", None
    delay = cfg.schedule[attempt + 1] * random.uniform(0.8, 1.2)  # jitter: receivers recover unherded
    if retry_after is not None:
        # Honoured up to an hour, or the schedule's longest wait if longer: a receiver cannot
        # park a message for a year.
        delay = max(delay, min(retry_after, max(3600.0, *cfg.schedule)))
    state = state.model_copy(update={"status": "pending", "last_status_code": code,
                                     "next_attempt_at": now() + timedelta(seconds=delay)})
    callbacks.save_state(store, job_id, state)
    return "retry", delay
