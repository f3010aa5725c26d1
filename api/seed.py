"""POST /tts: the original single-process service's endpoint, for clients written against it.

Form fields `text` and `emotion` (default neutral). It waits for the job, like the original did,
up to VOXQ_SPEECH_TIMEOUT_S, and answers {"status": "success", "audio_url": <the job's audio URL>}
or {"status": "error", "message": ...} with a 4xx/5xx status. The job is an ordinary interactive
job (WAV at the engine's rate): the audio URL is GET /v1/jobs/{id}/audio.
"""
from __future__ import annotations

import logging
import re
from typing import Literal
from urllib.parse import unquote_to_bytes

from flask import Blueprint, jsonify, request, url_for
from pydantic import BaseModel, ConfigDict, Field

from api import blocking
from api.errors import ApiError
from api.validation import parse_job_request

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


def error_body(status: int, code: str, message: str, field: str | None = None) -> tuple[int, dict]:
    """An error in the seed's shape (api/faces.py picks it for every error on /tts)."""
    return status, SeedError(message=message).model_dump()


# A % not followed by two hex digits: werkzeug would keep it as text and speak it.
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def check_form_encoding(body: bytes) -> None:
    """400 for a urlencoded body that is not what it claims: a bad percent-escape, or escapes that
    decode to no UTF-8 text (werkzeug would put U+FFFD in their place and speak on)."""
    bad = _BAD_ESCAPE.search(body)
    if bad:
        raise ApiError(400, "invalid_form", f"the form body has an invalid percent-escape at byte {bad.start()}")
    for pair in body.split(b"&"):
        try:
            unquote_to_bytes(pair.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "invalid_form", "the form body is not UTF-8 text once percent-decoded") from None


@bp.post("/tts")
def tts():
    if request.mimetype not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise ApiError(415, "unsupported_media_type",
                       "send the fields as a form (application/x-www-form-urlencoded or multipart/form-data)")
    if request.mimetype == "application/x-www-form-urlencoded":
        check_form_encoding(request.get_data(cache=True))
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
