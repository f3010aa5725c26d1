"""The job API: submit, status, audio, marks, list and cancel."""
from __future__ import annotations

import base64
import hashlib
import json
import logging

from flask import Blueprint, jsonify, request, send_file, url_for
from kombu.exceptions import OperationalError
from pydantic import ValidationError

from api import auth, metrics, services, webhooks
from api.errors import ApiError, validation_error
from shared import logs, registry, tasks
from shared.jobs import TERMINAL, JobAccepted, JobList, JobRecord, JobRequest, JobView, job_view
from shared.options import CONTENT_TYPES, EMOTIONS, check_format_rate
from shared.storage import JOB_ID

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")
log = logging.getLogger(__name__)


def current_owner() -> str:
    return auth.owner()


def json_body() -> dict:
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "the body must be JSON (Content-Type: application/json)")
    body = request.get_json(silent=True)
    if body is None:
        raise ApiError(400, "invalid_json", "the body is not valid JSON")
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return body


def parse_job_request(body: dict) -> JobRequest:
    svc = services.get()
    try:
        job = JobRequest.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None
    if not job.text.strip():
        raise ApiError(422, "empty_text", "text is empty", "text")
    if len(job.text) > svc.settings.max_chars:
        raise ApiError(413, "text_too_long",
                       f"text has {len(job.text)} characters; the limit is {svc.settings.max_chars}", "text")
    caps = _engine_caps()  # one Redis read for both checks
    emotions = known_emotions(caps)
    if job.emotion not in emotions:
        raise ApiError(422, "unknown_emotion", f"unknown emotion {job.emotion!r}; valid: {', '.join(emotions)}",
                       "emotion")
    voices = known_voices(caps)
    if job.voice is not None and voices and job.voice not in voices:
        raise ApiError(422, "unknown_voice", f"unknown voice {job.voice!r}; valid: {', '.join(sorted(voices))}",
                       "voice")
    problem = check_format_rate(job.format, job.sample_rate)
    if problem:
        raise ApiError(422, "unsupported_sample_rate", problem, "sample_rate")
    return job


def _engine_caps() -> list[dict]:
    return registry.engines(services.get().store.redis)


def known_emotions(engines: list[dict] | None = None) -> tuple[str, ...]:
    """Emotions the live workers registered (the built-in presets before any worker has)."""
    engines = _engine_caps() if engines is None else engines
    found = {e for caps in engines for e in caps.get("emotions", [])}
    return tuple(sorted(found)) if found else EMOTIONS


def known_voices(engines: list[dict] | None = None) -> set[str]:
    engines = _engine_caps() if engines is None else engines
    return {v["name"] for caps in engines for v in caps.get("voices", [])}


def links(job_id: str) -> dict[str, str]:
    return {
        "self": url_for("jobs.get_job", job_id=job_id),
        "audio": url_for("jobs.get_audio", job_id=job_id),
    }


def view(record: JobRecord) -> JobView:
    return job_view(record, url_for("jobs.list_jobs"))


def owned_job(job_id: str) -> JobRecord:
    """The caller's job, or 404: another tenant's job must look exactly like no job at all."""
    if not JOB_ID.match(job_id):
        raise ApiError(404, "not_found", "no such job")
    record = services.get().store.get(job_id)
    if record is None or record.owner != current_owner():
        raise ApiError(404, "not_found", "no such job")
    return record


def _queue_for(priority: str) -> str:
    svc = services.get()
    # Interactive work goes to a GPU pool when one is alive: it finishes a short job soonest.
    if priority == "interactive":
        alive = registry.alive_queues(svc.store.redis, svc.settings.heartbeat_ttl_s)
        if tasks.GPU_INTERACTIVE in alive:
            return tasks.GPU_INTERACTIVE
    return tasks.QUEUE_FOR_PRIORITY[priority]


def submit(job: JobRequest, owner: str) -> JobRecord:
    """Store the job, then publish it. The record exists before anyone hears of the job."""
    svc = services.get()
    record = svc.store.create(job, owner)
    try:
        svc.celery.send_task(
            tasks.SYNTHESIZE, args=[record.id], queue=_queue_for(job.priority),
            # Flower and the event stream show this instead of arguments: the text never travels
            # through the broker anyway, but nothing of the job should be readable there.
            argsrepr=repr([record.id]), kwargsrepr="{}",
            retry=False,
        )
    except OperationalError:
        svc.store.discard(record)
        raise ApiError(503, "unavailable", "the queue is unavailable; retry shortly", headers={"Retry-After": "5"})
    log.info("job %s queued: %d chars, priority %s", record.id, record.text_chars, record.priority,
             extra=logs.job_fields(record, status="queued"))
    metrics.job_submitted(record.priority)
    return record


def _accepted(record: JobRecord, status_code: int = 202):
    body = JobAccepted(id=record.id, status=record.status, created_at=record.created_at, links=links(record.id))
    response = jsonify(body.model_dump(mode="json"))
    response.status_code = status_code
    response.headers["Location"] = url_for("jobs.get_job", job_id=record.id)
    return response


def _idempotent(owner: str, key: str, body: dict):
    """Return (existing record or None, a function to remember the new job)."""
    svc = services.get()
    if len(key) > 255:
        raise ApiError(422, "invalid_idempotency_key", "Idempotency-Key is longer than 255 characters",
                       "Idempotency-Key")
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    redis_key = f"voxq:idem:{owner}:{hashlib.sha256(key.encode()).hexdigest()}"
    existing = svc.store.redis.get(redis_key)
    if existing:
        stored = json.loads(existing)
        if stored["body"] != digest:
            raise ApiError(409, "idempotency_conflict",
                           "this Idempotency-Key was used with a different request body", "Idempotency-Key")
        record = svc.store.get(stored["job"])
        if record is not None:
            return record, None

    def remember(record: JobRecord) -> bool:
        value = json.dumps({"body": digest, "job": record.id})
        return bool(svc.store.redis.set(redis_key, value, nx=True, ex=svc.settings.idempotency_ttl_s))

    return None, remember


@bp.post("")
def create_job():
    body = json_body()
    job = parse_job_request(body)
    owner = current_owner()
    if job.callback_url:
        webhooks.check_callback(owner, job.callback_url)
    key = request.headers.get("Idempotency-Key")
    if key:
        existing, remember = _idempotent(owner, key, body)
        if existing is not None:
            return _accepted(existing, 200)
        auth.charge(owner, len(job.text))
        record = submit(job, owner)
        if not remember(record):
            # Lost a race with an identical request: answer with the winner's job.
            existing, _ = _idempotent(owner, key, body)
            if existing is not None:
                services.get().store.cancel(record.id)
                return _accepted(existing, 200)
        return _accepted(record)
    auth.charge(owner, len(job.text))
    return _accepted(submit(job, owner))


@bp.get("/<job_id>")
def get_job(job_id: str):
    return jsonify(view(owned_job(job_id)).model_dump(mode="json"))


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
    records, next_cursor = svc.store.list(current_owner(), status, limit, cursor)
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
        if not (record.result or {}).get("marks"):
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
            "sample_rate": record.result["sample_rate"], "audio_base64": base64.b64encode(data).decode(),
        })
    mimetype = CONTENT_TYPES[fmt]
    if fmt == "pcm":
        mimetype = f"audio/L16; rate={record.result['sample_rate']}; channels=1"
    response = send_file(path, mimetype=mimetype, conditional=True, etag=record.result["sha256"],
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
        svc.store.delete(record)
        return "", 204
    ok, previous = svc.store.cancel(record.id)
    if ok and record.callback_url:
        webhooks.notify(record.id)
    if not ok and previous in TERMINAL:
        # It finished while we asked: delete its files, as for any finished job.
        svc.storage.delete(record.id)
        svc.store.delete(record)
        return "", 204
    svc.store.redis.delete(svc.store.text_key(record.id))
    return jsonify(view(svc.store.get(record.id)).model_dump(mode="json")), 202
