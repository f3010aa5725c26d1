"""Job webhooks on the API side: the submit-time check of a callback URL, and redelivery."""
from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from kombu.exceptions import OperationalError

from api import auth, services
from api.errors import ApiError
from api.ownership import owned_job, view
from shared import callback_policy
from shared.jobs import TERMINAL

bp = Blueprint("webhooks", __name__, url_prefix="/v1/jobs")
log = logging.getLogger(__name__)


def _check_url(url: str) -> None:
    try:
        callback_policy.check(url, services.get().callback_policy)
    except callback_policy.CallbackError as exc:
        if not exc.transient:  # DNS that cannot answer now may answer by the time the job ends
            raise ApiError(422, exc.code, exc.message, "callback_url") from None


def check_callback(owner: str, url: str) -> None:
    """Refuse (422) a callback URL that can be known bad now; delivery checks it again."""
    _check_url(url)
    if not auth.keyring().secrets_for(owner):
        raise ApiError(422, "no_webhook_secret",
                       "no webhook signing secret is configured for this API key, so a callback cannot be signed",
                       "callback_url")
    if services.get().store.webhooks.is_disabled(owner, url):
        raise ApiError(422, "callback_url_disabled",
                       "this callback_url answered 410 Gone and is disabled for this API key; "
                       "redeliver a job's webhook to enable it again", "callback_url")


@bp.post("/<job_id>/webhook/redeliver")
def redeliver(job_id: str):
    svc = services.get()
    record = owned_job(job_id)
    if not record.callback_url:
        raise ApiError(409, "no_callback", "this job has no callback_url")
    if record.status not in TERMINAL:
        raise ApiError(409, "not_finished", f"the job is {record.status}; its webhook goes out when it ends")
    _check_url(record.callback_url)
    # Asking for a redelivery is the tenant saying the receiver is back: lift a 410's block.
    svc.store.webhooks.enable(record.owner, record.callback_url)
    try:
        svc.webhooks.redeliver(record.id)
    except OperationalError:
        raise ApiError(503, "unavailable", "the queue is unavailable; retry shortly",
                       headers={"Retry-After": "5"}) from None
    response = jsonify(view(svc.store.jobs.get(record.id) or record).model_dump(mode="json"))
    response.status_code = 202
    return response
