"""Turning a request into a job, for every face (jobs, OpenAI speech, the seed's /tts): parse and
check it against the live engines, store it, queue it; and find the caller's own job."""
from __future__ import annotations

import hashlib
import json
import logging

from flask import request, url_for
from kombu.exceptions import OperationalError
from pydantic import ValidationError

from api import auth, bodies, lexicons, metrics, services
from api.errors import ApiError, validation_error
from shared import logs, plan, tasks
from shared.chunk_files import ChunkFiles
from shared.jobs import JobRecord, JobRequest, JobView, job_view
from shared.options import EMOTIONS
from shared.storage import JOB_ID
from shared.text import ssml

log = logging.getLogger(__name__)


def json_body() -> dict:
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "the body must be JSON (Content-Type: application/json)")
    body = bodies.parse_json()
    if body is None:
        raise ApiError(400, "invalid_json", "the body is not valid JSON")
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return body


def engine_caps() -> list[dict]:
    return services.get().store.workers.engines()


def known_emotions(engines: list[dict] | None = None) -> tuple[str, ...]:
    """Emotions the live workers registered (the built-in presets before any worker has)."""
    engines = engine_caps() if engines is None else engines
    found = {e for caps in engines for e in caps.get("emotions", [])}
    return tuple(sorted(found)) if found else EMOTIONS


def known_voices(engines: list[dict] | None = None) -> set[str]:
    engines = engine_caps() if engines is None else engines
    return {v["name"] for caps in engines for v in caps.get("voices", [])}


def parse_job_request(body: dict) -> JobRequest:
    svc = services.get()
    try:
        job = JobRequest.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None
    caps = engine_caps()  # one Redis read for both lists
    problem = (plan.check_text(job.text, svc.settings.limits.max_chars)
               or plan.check_options(job, known_emotions(caps), known_voices(caps)))
    if problem:
        raise refused(problem)
    if job.text_type == "ssml":
        check_ssml(job.text)
    # The lexicons the job will use, fixed now: the request's, or the tenant's defaults.
    return job.model_copy(update={"lexicons": lexicons.for_request(job.lexicons, auth.owner())})


def refused(problem: plan.Problem) -> ApiError:
    """The HTTP answer to a request that cannot be spoken: 413 for a text over the limit, else 422."""
    return ApiError(413 if problem.code == "text_too_long" else 422, *problem)


def check_ssml(text: str) -> None:
    """422 for SSML voxq will not speak, here in the API, so none of it reaches a worker."""
    try:
        ssml.parse(text)
    except ssml.SsmlError as exc:
        raise ApiError(422, exc.code, str(exc), "text") from None


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
    record = services.get().store.jobs.get(job_id)
    if record is None or record.owner != auth.owner():
        raise ApiError(404, "not_found", "no such job")
    return record


def submit(job: JobRequest, owner: str) -> JobRecord:
    """Store the job, then publish it. The record exists before anyone hears of the job."""
    svc = services.get()
    record = svc.store.jobs.create(job, owner)
    try:
        tasks.send_job(svc.celery, record.id, svc.store.workers.queue_for(job.priority, svc.settings.jobs.heartbeat_ttl_s))
    except OperationalError:
        svc.store.jobs.discard(record)
        raise ApiError(503, "unavailable", "the queue is unavailable; retry shortly", headers={"Retry-After": "5"})
    log.info("job %s queued: %d chars, priority %s", record.id, record.text_chars, record.priority,
             extra=logs.job_fields(record, status="queued"))
    metrics.job_submitted(record.priority)
    return record


def cancel(job_id: str) -> tuple[bool, str]:
    """Cancel a queued or running job: (whether this call canceled it, the status before).
    The chunks that landed go too; a worker removes any that land after (worker/runner.py)."""
    svc = services.get()
    ok, previous = svc.store.jobs.cancel(job_id)
    if ok:
        ChunkFiles(svc.storage, job_id).delete()
    return ok, previous


def body_digest(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
