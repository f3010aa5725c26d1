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
from shared import logs, ssml, tasks
from shared.jobs import JobRecord, JobRequest, JobView, job_view
from shared.options import EMOTIONS, check_format_rate
from shared.storage import JOB_ID
from shared.text import frontend
from shared.text.lexicon import UnknownLexicon, resolve

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
    if not job.text.strip():
        raise ApiError(422, "empty_text", "text is empty", "text")
    limit = svc.settings.limits.max_chars
    if len(job.text) > limit:
        raise ApiError(413, "text_too_long", f"text has {len(job.text)} characters; the limit is {limit}", "text")
    caps = engine_caps()  # one Redis read for both checks
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
    if job.text_type == "ssml":
        check_ssml(job.text)
    # The lexicons the job will use, fixed now: the request's, or the tenant's defaults.
    names = lexicons.for_request(job.lexicons, auth.owner())
    check_speakable(job.text, job.text_type, names)
    return job.model_copy(update={"lexicons": names})


def check_ssml(text: str) -> None:
    """422 for SSML voxq will not speak, here in the API, so none of it reaches a worker."""
    try:
        ssml.parse(text)
    except ssml.SsmlError as exc:
        raise ApiError(422, exc.code, str(exc), "text") from None


def check_speakable(text: str, text_type: str, names: list[str]) -> None:
    """422 nothing_to_say for text with nothing to say (only emoji, punctuation), before a job
    exists: the rule the worker applies too (shared/text/frontend.py). The lexicons are read only
    when the text alone has nothing, since an alias may give it words."""
    ssml = text_type == "ssml"
    if frontend.speakable(text, ssml=ssml):
        return
    if names:
        owner = auth.owner()
        try:
            chosen = resolve(names, services.get().store.lexicons.get_many(owner, names))
        except UnknownLexicon:
            return  # deleted since for_request looked: the worker fails the job, naming it
        if frontend.speakable(text, ssml=ssml, lexicons=chosen):
            return
    raise ApiError(422, "nothing_to_say", frontend.NOTHING_TO_SAY, "text")


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


def queue_for(priority: str) -> str:
    svc = services.get()
    return tasks.route(priority, svc.store.workers.alive_queues(svc.settings.jobs.heartbeat_ttl_s))


def submit(job: JobRequest, owner: str) -> JobRecord:
    """Store the job, then publish it. The record exists before anyone hears of the job."""
    svc = services.get()
    record = svc.store.jobs.create(job, owner)
    try:
        svc.celery.send_task(
            tasks.SYNTHESIZE, args=[record.id], queue=queue_for(job.priority), priority=tasks.FIRST_CHUNK_PRIORITY,
            # Only the job ID travels through the broker, and Flower shows it; the text, the
            # user's data, stays in the store and never enters the broker or Flower.
            argsrepr=repr([record.id]), kwargsrepr="{}",
            retry=False,
        )
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
        svc.storage.delete_chunks(job_id)
    return ok, previous


def body_digest(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
