"""POST /tts: the original single-process service's endpoint, for clients written against it.

Form fields `text` and `emotion` (default neutral). It waits for the job, like the original did,
up to VOXQ_SPEECH_TIMEOUT_S, and answers {"status": "success", "audio_url": <the job's audio URL>}
or {"status": "error", "message": ...} with a 4xx/5xx status. The job is an ordinary interactive
job (WAV at the engine's rate): the audio URL is GET /v1/jobs/{id}/audio.
"""
from __future__ import annotations

import logging
from typing import Literal

import redis
from flask import Blueprint, jsonify, request, url_for
from pydantic import BaseModel, ConfigDict, Field
from werkzeug.exceptions import HTTPException

from api import blocking
from api.errors import ApiError
from api.jobs import parse_job_request

bp = Blueprint("seed", __name__)
log = logging.getLogger(__name__)


class SeedForm(BaseModel):
    """POST /tts form fields."""

    model_config = ConfigDict(extra="ignore")

    text: str = Field(..., description="the text to speak", examples=["你好，世界。"])
    emotion: str = Field("neutral", description="neutral, happy, sad, angry, calm or surprised", examples=["happy"])


class SeedSuccess(BaseModel):
    status: Literal["success"] = "success"
    audio_url: str


class SeedError(BaseModel):
    status: Literal["error"] = "error"
    message: str


def seed_error(status: int, message: str, headers=None):
    response = jsonify(SeedError(message=message).model_dump())
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError):
    return seed_error(exc.status, exc.message, exc.headers)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    return seed_error(exc.code or 500, exc.description or exc.name)


@bp.errorhandler(redis.RedisError)
def _redis_down(exc):
    log.warning("redis unavailable: %s", exc.__class__.__name__)
    return seed_error(503, "the job store is unavailable; retry shortly", {"Retry-After": "5"})


@bp.errorhandler(Exception)
def _unexpected(exc: Exception):
    log.exception("unhandled error")
    return seed_error(500, "internal error")


@bp.record_once
def _configure(state) -> None:
    blocking.configure(state.app)


@bp.post("/tts")
def tts():
    if request.mimetype not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise ApiError(415, "unsupported_media_type",
                       "send the fields as a form (application/x-www-form-urlencoded or multipart/form-data)")
    text = request.form.get("text")
    if text is None:
        raise ApiError(422, "invalid_request", "the form field 'text' is required", "text")
    form = SeedForm(text=text, emotion=request.form.get("emotion") or "neutral")
    job = parse_job_request({"text": form.text, "emotion": form.emotion, "priority": "interactive",
                             "metadata": {"via": "/tts"}})
    try:
        record = blocking.run(job)
    except blocking.TimedOut as exc:
        raise ApiError(504, "timeout", f"the audio was not ready within {exc.timeout_s:g} s; the job was canceled") \
            from None
    if record.status != "succeeded":
        raise blocking.failure(record)
    audio_url = url_for("jobs.get_audio", job_id=record.id)
    return jsonify(SeedSuccess(audio_url=audio_url).model_dump())
