"""Job webhooks on the API side: the submit-time check of a callback URL, and redelivery."""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify
from kombu.exceptions import OperationalError

from api import auth, services
from api.errors import ApiError
from shared import callbacks
from shared.jobs import TERMINAL

bp = Blueprint("webhooks", __name__, url_prefix="/v1/jobs")
log = logging.getLogger(__name__)


def _policy() -> callbacks.Policy:
    policy = current_app.extensions.get("voxq.callbacks")
    if policy is None:
        try:
            policy = callbacks.Policy.from_env(auth.config_environ(current_app))
        except ValueError as exc:
            log.error("webhook settings are invalid: %s", exc)
            raise ApiError(503, "misconfigured", "webhooks are misconfigured on this server") from None
        current_app.extensions["voxq.callbacks"] = policy
    return policy


def _first_delay() -> float:
    return callbacks.retry_schedule(auth.config_environ(current_app))[0]


def check_callback(owner: str, url: str) -> None:
    """Refuse (422) a callback URL that can be known bad now; delivery checks it again."""
    try:
        callbacks.check(url, _policy())
    except callbacks.CallbackError as exc:
        if not exc.transient:  # DNS that cannot answer now may answer by the time the job ends
            raise ApiError(422, exc.code, exc.message, "callback_url") from None
    if not auth.keyring().secrets_for(owner):
        raise ApiError(422, "no_webhook_secret",
                       "no webhook signing secret is configured for this API key, so a callback cannot be signed",
                       "callback_url")
    if callbacks.is_disabled(services.get().store.redis, owner, url):
        raise ApiError(422, "callback_url_disabled",
                       "this callback_url answered 410 Gone and is disabled for this API key; "
                       "redeliver a job's webhook to enable it again", "callback_url")


def notify(job_id: str) -> None:
    """Queue the webhook of a job the API just ended (a cancel). The cancel stands even if not."""
    svc = services.get()
    try:
        callbacks.publish(svc.celery, svc.store, job_id, _first_delay())
    except Exception:  # noqa: BLE001 - the cancel has happened; the webhook can be redelivered
        log.exception("job %s: could not queue its webhook", job_id)


@bp.post("/<job_id>/webhook/redeliver")
def redeliver(job_id: str):
    from api.jobs import owned_job, view

    svc = services.get()
    record = owned_job(job_id)
    if not record.callback_url:
        raise ApiError(409, "no_callback", "this job has no callback_url")
    if record.status not in TERMINAL:
        raise ApiError(409, "not_finished", f"the job is {record.status}; its webhook goes out when it ends")
    try:
        callbacks.check(record.callback_url, _policy())
    except callbacks.CallbackError as exc:
        if not exc.transient:
            raise ApiError(422, exc.code, exc.message, "callback_url") from None
    # Asking for a redelivery is the tenant saying the receiver is back: lift a 410's block.
    svc.store.redis.srem(callbacks.disabled_key(record.owner), callbacks.url_digest(record.callback_url))
    try:
        callbacks.publish(svc.celery, svc.store, record.id, redeliver=True)
    except OperationalError:
        raise ApiError(503, "unavailable", "the queue is unavailable; retry shortly",
                       headers={"Retry-After": "5"}) from None
    response = jsonify(view(svc.store.get(record.id) or record).model_dump(mode="json"))
    response.status_code = 202
    return response
