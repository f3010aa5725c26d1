"""Webhook delivery: Standard Webhooks v1, signed, retried on its own queue, SSRF-checked again.

A delivery worker consumes only the `webhooks` queue (`-Q webhooks --pool threads`), so a slow
receiver never holds a synthesis worker. Each attempt resolves and checks the callback URL again
and connects to the address it checked, with the URL's host only in the Host header and TLS SNI.

The Celery task (worker/tasks.py) retries with `retry(countdown=...)` as `Delivery.attempt` says.
With the Redis broker a countdown longer than the visibility timeout can be handed out twice, so
each attempt first claims its number in Redis and a second copy of the same attempt does nothing.
"""
from __future__ import annotations

import email.utils
import json
import logging
import random
import time
from datetime import datetime, timedelta, timezone

import urllib3
from standardwebhooks.webhooks import Webhook
from urllib3.exceptions import HTTPError

from shared import callback_policy
from shared.config import WebhookSettings
from shared.jobs import WebhookState, job_view, now
from shared.keys import KeySource
from shared.store import Store

log = logging.getLogger(__name__)

USER_AGENT = "voxq-webhooks/1"
CONNECT_TIMEOUT_S = 5.0


def sign(secrets: tuple[str, ...], webhook_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: one `v1,<base64>` per secret, space-separated (a rotation
    signs with both, so receivers holding either secret verify it)."""
    when = datetime.fromtimestamp(timestamp, timezone.utc)
    return " ".join(Webhook(secret).sign(webhook_id, when, body.decode("utf-8")) for secret in secrets)


class NetworkError(Exception):
    pass


def post(target: callback_policy.Target, body: bytes, headers: dict, timeout_s: float) -> urllib3.BaseHTTPResponse:
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


class Delivery:
    """The delivery state machine of one job's webhook: each call is one attempt."""

    def __init__(self, settings: WebhookSettings, store: Store, keys: KeySource):
        self.settings = settings
        self.schedule = settings.retry_schedule
        self.policy = callback_policy.Policy.from_settings(settings)
        self.store = store
        self.keys = keys

    def run(self, job_id: str, webhook_id: str, generation: int, attempt: int) -> tuple[str, float | None]:
        """One attempt, claimed so a duplicate message sends nothing: (outcome, seconds until the
        next attempt, or None when there is none)."""
        if not self.store.webhooks.claim_attempt(job_id, generation, attempt, self.settings.timeout_s * 2 + 60):
            return "duplicate", None
        outcome, retry_in = self._attempt(job_id, webhook_id, generation, attempt)
        self.store.webhooks.record_attempt(job_id, generation, attempt, outcome, max(self.schedule) * 2 + 86400)
        return outcome, retry_in

    def _attempt(self, job_id: str, webhook_id: str, generation: int, attempt: int):
        jobs = self.store.jobs
        current_gen, current_id = jobs.webhook_delivery(job_id)
        record = jobs.get(job_id)
        if record is None or not record.callback_url:
            return "gone", None
        if (current_gen is not None and current_gen != generation) or current_id not in (None, webhook_id):
            return "superseded", None  # a redelivery took over
        state = record.webhook or WebhookState()
        state = state.model_copy(update={"attempts": state.attempts + 1, "status": "delivering",
                                         "next_attempt_at": None})

        def finish(status: str, code: int | None = None, outcome: str | None = None):
            jobs.save_webhook(job_id, state.model_copy(update={"status": status, "last_status_code": code}))
            return outcome or status, None

        if self.store.webhooks.is_disabled(record.owner, record.callback_url):
            # Not an attempt: the receiver said 410 Gone to this key before.
            state = state.model_copy(update={"attempts": state.attempts - 1})
            return finish("disabled", state.last_status_code)
        secrets = self.keys.current().secrets_for(record.owner)
        if not secrets:
            log.error("job %s: no webhook secret for tenant %s; not sent", job_id, record.owner)
            return finish("failed", None, "no_secret")
        try:
            target = callback_policy.check(record.callback_url, self.policy)
        except callback_policy.CallbackError as exc:
            log.warning("job %s: webhook refused: %s", job_id, exc.message)
            if exc.transient:
                return self._retry(job_id, state, attempt, None, None)
            return finish("failed", None, "blocked")

        jobs.save_webhook(job_id, state)
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
            response = post(target, body, headers, self.settings.timeout_s)
        except NetworkError as exc:
            log.info("job %s: webhook attempt %d failed: %s", job_id, attempt + 1, exc)
            return self._retry(job_id, state, attempt, None, None)
        code = response.status
        if 200 <= code < 300:
            log.info("job %s: webhook delivered (%d) on attempt %d", job_id, code, attempt + 1)
            return finish("delivered", code)
        if code == 410:
            self.store.webhooks.disable(record.owner, record.callback_url)
            log.warning("job %s: receiver answered 410 Gone; its URL is disabled for tenant %s", job_id, record.owner)
            return finish("disabled", code)
        if code == 429 or code >= 500:
            return self._retry(job_id, state, attempt, code, retry_after_s(response.headers.get("Retry-After")))
        # A redirect, or a 4xx that will not change by asking again: redirects are never followed,
        # because the place they point to was never checked.
        log.warning("job %s: webhook answered %d; not retried", job_id, code)
        return finish("failed", code)

    def _retry(self, job_id: str, state: WebhookState, attempt: int, code: int | None, retry_after: float | None):
        jobs = self.store.jobs
        if attempt + 1 >= len(self.schedule):
            jobs.save_webhook(job_id, state.model_copy(update={"status": "failed", "last_status_code": code}))
            log.warning("job %s: webhook given up after %d attempts", job_id, attempt + 1)
            return "failed", None
        delay = self.schedule[attempt + 1] * random.uniform(0.8, 1.2)  # jitter: receivers recover unherded
        if retry_after is not None:
            # Honoured up to an hour, or the schedule's longest wait if longer: a receiver cannot
            # park a message for a year.
            delay = max(delay, min(retry_after, max(3600.0, *self.schedule)))
        state = state.model_copy(update={"status": "pending", "last_status_code": code,
                                         "next_attempt_at": now() + timedelta(seconds=delay)})
        jobs.save_webhook(job_id, state)
        return "retry", delay
