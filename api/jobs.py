"""The job API: submit, status, audio, marks, list and cancel."""
from __future__ import annotations

import base64
import logging

from flask import Blueprint, jsonify, request, send_file, url_for

from api import auth, bodies, services, submission, validation, webhooks
from api.errors import ApiError
from api.ownership import links, owned_job, view
from shared.jobs import TERMINAL, JobAccepted, JobList, JobRecord
from shared.options import CONTENT_TYPES

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")
log = logging.getLogger(__name__)


def _accepted(record: JobRecord, status_code: int = 202):
    body = JobAccepted(id=record.id, status=record.status, created_at=record.created_at, links=links(record.id))
    response = jsonify(body.model_dump(mode="json"))
    response.status_code = status_code
    response.headers["Location"] = url_for("jobs.get_job", job_id=record.id)
    return response


def _idempotent(owner: str, key: str, digest: str) -> JobRecord | None:
    """The job this Idempotency-Key already made with this body, or None; 409 for another body."""
    if len(key) > 255:
        raise ApiError(422, "invalid_idempotency_key", "Idempotency-Key is longer than 255 characters",
                       "Idempotency-Key")
    stored = services.get().store.idempotency.get(owner, key)
    if stored is None:
        return None
    stored_digest, job_id = stored
    if stored_digest != digest:
        raise ApiError(409, "idempotency_conflict",
                       "this Idempotency-Key was used with a different request body", "Idempotency-Key")
    return services.get().store.jobs.get(job_id)


@bp.post("")
def create_job():
    svc = services.get()
    body = bodies.json_body()
    job = validation.parse_job_request(body)
    owner = auth.owner()
    if job.callback_url:
        webhooks.check_callback(owner, job.callback_url)
    key = request.headers.get("Idempotency-Key")
    if key:
        digest = bodies.body_digest(body)
        existing = _idempotent(owner, key, digest)
        if existing is not None:
            return _accepted(existing, 200)
        auth.charge(owner, len(job.text))
        record = submission.submit(job, owner, replicate=False)
        if not svc.store.idempotency.remember(owner, key, digest, record.id, svc.settings.limits.idempotency_ttl_s):
            # Lost a race with an identical request: answer with the winner's job.
            existing = _idempotent(owner, key, digest)
            if existing is not None:
                submission.cancel(record.id)
                return _accepted(existing, 200)
        # One wait for the job and its key: a retry after a failover finds the same job.
        submission.replicated(record)
        return _accepted(record)
    auth.charge(owner, len(job.text))
    return _accepted(submission.submit(job, owner))


@bp.get("/<job_id>")
def get_job(job_id: str):
    record = owned_job(job_id)
    shown = view(record)
    if request.args.get("timings") in ("1", "true"):
        # The first audio's hops, for `voxq bench latency` and for operators: not part of the
        # job's usual answer.
        shown.timings = record.timings
    return jsonify(shown.model_dump(mode="json"))


@bp.get("")
def list_jobs():
    svc = services.get()
    status = request.args.get("status") or None
    if status and status not in ("queued", "running", "succeeded", "failed", "canceled"):
        raise ApiError(422, "invalid_request", "status must be one of queued, running, succeeded, failed, canceled",
                       "status")
    try:
        limit = int(request.args.get("limit", 20))
    except ValueError:
        raise ApiError(422, "invalid_request", "limit must be an integer", "limit") from None
    if not 1 <= limit <= 100:
        raise ApiError(422, "invalid_request", "limit must be between 1 and 100", "limit")
    cursor = request.args.get("cursor") or None
    if cursor:
        try:
            cursor = base64.urlsafe_b64decode(cursor.encode()).decode()
            float(cursor.partition(":")[0])
        except (ValueError, UnicodeDecodeError):
            raise ApiError(422, "invalid_request", "cursor is not one this API issued", "cursor") from None
    records, next_cursor = svc.store.jobs.list(auth.owner(), status, limit, cursor)
    body = JobList(
        jobs=[view(r) for r in records],
        next_cursor=base64.urlsafe_b64encode(next_cursor.encode()).decode() if next_cursor else None,
    )
    return jsonify(body.model_dump(mode="json"))


def _finished_file(record: JobRecord, marks: bool = False):
    if record.status != "succeeded":
        raise ApiError(409, "not_ready", f"the job is {record.status}; audio exists only once it succeeded")
    storage = services.get().storage
    if marks:
        if not (record.result and record.result.marks):
            raise ApiError(404, "not_found", "this job was not asked for timing marks")
        path = storage.marks_path(record.id)
    else:
        path = storage.audio_path(record.id, record.options.format)
    if not path.is_file():
        raise ApiError(404, "not_found", "the job's files have expired or were deleted")
    return path


@bp.get("/<job_id>/audio")
def get_audio(job_id: str):
    record = owned_job(job_id)
    encoding = request.args.get("encoding")
    if encoding not in (None, "base64"):
        raise ApiError(422, "invalid_request", "encoding must be base64 (or absent for the raw file)", "encoding")
    path = _finished_file(record)
    fmt = record.options.format
    if encoding == "base64":
        data = path.read_bytes()
        return jsonify({
            "id": record.id, "format": fmt, "content_type": CONTENT_TYPES[fmt],
            "sample_rate": record.result.sample_rate, "audio_base64": base64.b64encode(data).decode(),
        })
    mimetype = CONTENT_TYPES[fmt]
    if fmt == "pcm":
        mimetype = f"audio/L16; rate={record.result.sample_rate}; channels=1"
    response = send_file(path, mimetype=mimetype, conditional=True, etag=record.result.sha256,
                         download_name=path.name, max_age=0)
    response.headers["Accept-Ranges"] = "bytes"
    return response


@bp.get("/<job_id>/marks")
def get_marks(job_id: str):
    record = owned_job(job_id)
    path = _finished_file(record, marks=True)
    return send_file(path, mimetype="application/json", conditional=True, max_age=0)


@bp.delete("/<job_id>")
def delete_job(job_id: str):
    svc = services.get()
    record = owned_job(job_id)
    if record.status in TERMINAL:
        svc.storage.delete(record.id)
        svc.store.jobs.delete(record)
        return "", 204
    ok, previous = submission.cancel(record.id)
    if ok and record.callback_url:
        svc.webhooks.notify(record.id)
    if not ok and previous in TERMINAL:
        # It finished while we asked: delete its files, as for any finished job.
        svc.storage.delete(record.id)
        svc.store.jobs.delete(record)
        return "", 204
    return jsonify(view(svc.store.jobs.get(record.id)).model_dump(mode="json")), 202
