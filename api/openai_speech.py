"""POST /v1/audio/speech: OpenAI's speech API on voxq, so tools that already speak it work unchanged.

The request runs as an interactive job (same queue, cache, limits and job record as POST /v1/jobs,
visible in GET /v1/jobs) and the answer is the audio itself, once the job ends, within
VOXQ_SPEECH_TIMEOUT_S (default 60 s; past it: 504, and the job is canceled).

Mapping (documented in VOICES, INSTRUCTION_WORDS and SPEECH_TYPES below):
- model: "tts-1", "tts-1-hd", "gpt-4o-mini-tts" and voxq's engine names are accepted; they all
  run on the cluster's engine. Anything else: 404 model_not_found, as OpenAI answers.
- voice: every OpenAI voice name is the engine's default voice ("baker" for the default engine)
  with an emotion that suits it (VOICES); voxq's own voice names work as they are, neutral.
  Anything else: 400, param "voice".
- instructions: the first emotion word found (English or Chinese, INSTRUCTION_WORDS) sets the
  emotion, e.g. "say it happily" or "开心地说" -> happy. No other instruction is followed.
- response_format: mp3, opus (Ogg Opus), aac (ADTS, encoded by the workers with PyAV), flac, wav,
  pcm (raw 24 kHz 16-bit little-endian mono). All but flac stream as they are made.
- loudness (voxq's own, beyond OpenAI's shape): a target in LUFS or "off"; absent, files are
  normalised to -23 LUFS over the whole answer (shared/options.py).
- speed: 0.5 to 2.0 (OpenAI allows 0.25 to 4.0; outside voxq's range is a 400, not a silent clamp).
- input: at most 4096 characters, as OpenAI (and the server's VOXQ_MAX_CHARS if lower).

Every error has OpenAI's shape, {"error": {"message", "type", "param", "code"}}, so the official
SDKs raise their own classes (BadRequestError, NotFoundError, ...). The SDKs retry 5xx answers,
a 504 timeout included, twice by default.
"""
from __future__ import annotations

import base64
import json
import logging
import re
from typing import Iterator, Literal

from flask import Blueprint, Response, jsonify, send_file, stream_with_context
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api import blocking, services, streams, submission
from api.errors import ApiError, validation_error
from api.bodies import json_body
from api.validation import known_emotions, known_voices, parse_job_request
from shared.jobs import SpokenText
from shared.options import Loudness

bp = Blueprint("openai_speech", __name__)
log = logging.getLogger(__name__)

OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
MAX_INPUT_CHARS = 4096
SAMPLE_RATE = 24000  # OpenAI's output rate, pcm included

# OpenAI voice -> emotion on the engine's default voice.
VOICES = {
    "alloy": "neutral", "ash": "calm", "ballad": "calm", "coral": "happy", "echo": "calm",
    "fable": "happy", "nova": "happy", "onyx": "calm", "sage": "calm", "shimmer": "surprised",
    "verse": "neutral", "marin": "neutral", "cedar": "calm",
}

# Emotion words looked for in `instructions`; the earliest one in the text wins. English words
# match at a word start ("cheer" finds "cheerful"); there is no negation ("not happy" is happy).
INSTRUCTION_WORDS = {
    "happy": ("happy", "happily", "cheer", "joy", "excit", "upbeat", "开心", "高兴", "快乐", "愉快", "兴奋", "欢快"),
    "sad": ("sad", "sorrow", "melanchol", "gloomy", "悲伤", "难过", "伤心", "忧伤"),
    "angry": ("angry", "angrily", "furious", "annoyed", "生气", "愤怒", "恼火"),
    "surprised": ("surprise", "amazed", "astonish", "惊讶", "吃惊", "惊喜"),
    "calm": ("calm", "sooth", "relax", "gentle", "quiet", "平静", "冷静", "温柔", "舒缓", "轻柔"),
    "neutral": ("neutral", "plain", "flat", "中性", "平淡"),
}
_INSTRUCTION_RE = re.compile(
    "|".join(
        f"(?P<{emotion}>" + "|".join(
            re.escape(word) if not word.isascii() else rf"\b{re.escape(word)}" for word in words
        ) + ")"
        for emotion, words in INSTRUCTION_WORDS.items()
    ),
    re.IGNORECASE,
)

SPEECH_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg; codecs=opus",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
    "aac": "audio/aac",
}


class SpeechRequest(BaseModel):
    """POST /v1/audio/speech body (OpenAI's shape)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., max_length=128, description=f"{', '.join(OPENAI_MODELS)}, or a voxq engine name",
                       examples=["tts-1"])
    input: SpokenText = Field(..., max_length=MAX_INPUT_CHARS, description="the text to speak", examples=["你好，世界。"])
    voice: str = Field(..., max_length=64,
                       description=f"an OpenAI voice ({', '.join(VOICES)}) or a voxq voice name",
                       examples=["alloy"])
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = Field(
        "mp3", description="aac is an ADTS stream; pcm is raw 24 kHz 16-bit little-endian mono")
    speed: float = Field(1.0, ge=0.5, le=2.0)
    instructions: str | None = Field(None, max_length=4096,
                                     description="an emotion word in it (happy, 开心, sad, calm, ...) sets the emotion")
    stream_format: Literal["audio", "sse"] | None = Field(
        None, description="audio (default): the bytes as they are made; sse: speech.audio.delta events "
                          "(base64 audio) and a closing speech.audio.done")
    # voxq's own, beyond OpenAI's shape (the SDKs send them with extra_body).
    text_type: Literal["text", "ssml"] = Field("text", description="ssml: input is an SSML document")
    lexicons: list[str] | None = Field(None, max_length=32, description="the caller's lexicons to apply")
    loudness: Loudness = Field(
        None, description="integrated loudness target in LUFS, or off; absent: the format's default")


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    error: OpenAIErrorBody


# voxq's field names where OpenAI's differ, for an error's `param`.
_PARAMS = {"text": "input", "format": "response_format"}


def error_body(status: int, code: str | None, message: str, param: str | None = None) -> tuple[int, dict]:
    """An error in OpenAI's shape (api/faces.py picks it for every error on this face)."""
    # OpenAI's kinds: every refusal of the request is an invalid request, bar the rate limit.
    if status == 429:
        kind = "rate_limit_error"
    elif status < 500:
        kind = "invalid_request_error"
    else:
        kind = "server_error"
    body = OpenAIError(error=OpenAIErrorBody(message=message, type=kind, param=_PARAMS.get(param, param), code=code))
    # OpenAI answers a malformed request with 400 where voxq's own API says 422.
    return (400 if status == 422 else status), body.model_dump(mode="json")


def emotion_from_instructions(instructions: str | None) -> str | None:
    match = _INSTRUCTION_RE.search(instructions or "")
    return match.lastgroup if match else None


def _check_model(model: str) -> None:
    engines = {caps["engine"] for caps in services.get().store.workers.engines()}
    engines.add(services.get().settings.engine.name)
    if model not in OPENAI_MODELS and model not in engines:
        raise ApiError(404, "model_not_found", f"The model '{model}' does not exist; use one of "
                       f"{', '.join([*OPENAI_MODELS, *sorted(engines)])}", "model")


def _job_body(speech: SpeechRequest) -> dict:
    ours = known_voices()
    if speech.voice in VOICES:
        voice, emotion = None, VOICES[speech.voice]
    elif speech.voice in ours:
        voice, emotion = speech.voice, "neutral"
    else:
        raise ApiError(400, "invalid_voice", f"Unknown voice '{speech.voice}'; use one of "
                       f"{', '.join([*VOICES, *sorted(ours)])}", "voice")
    emotion = emotion_from_instructions(speech.instructions) or emotion
    if emotion not in known_emotions():
        emotion = "neutral"
    if not speech.input.strip():
        raise ApiError(400, "empty_input", "input is empty", "input")
    return {
        "text": speech.input, "text_type": speech.text_type, "lexicons": speech.lexicons,
        "voice": voice, "emotion": emotion, "speed": speech.speed,
        "format": speech.response_format, "sample_rate": SAMPLE_RATE, "priority": "interactive",
        "loudness": speech.loudness,
        "metadata": {"via": "/v1/audio/speech", "model": speech.model, "voice": speech.voice},
    }


def _timed_out(timeout_s: float) -> ApiError:
    return ApiError(504, "timeout", f"speech was not ready within {timeout_s:g} s; the request was "
                    "canceled (shorter input, or a larger VOXQ_SPEECH_TIMEOUT_S, helps)")


def _sse(record, fmt: str) -> Iterator[str]:
    """OpenAI's speech events: speech.audio.delta (base64 audio, in order), then speech.audio.done;
    a job that fails mid-way ends with an `error` event instead."""
    sent = 0
    try:
        for block in streams.audio_chunks(record):
            sent += len(block)
            yield "data: " + json.dumps({"type": "speech.audio.delta", "audio": base64.b64encode(block).decode()}) + "\n\n"
    except streams.StreamAborted as exc:
        yield "data: " + json.dumps({"type": "error", "error": {"message": str(exc), "type": "server_error",
                                                               "code": "job_failed"}}) + "\n\n"
        return
    # voxq counts characters, not tokens: input counts the characters spoken, output the bytes sent.
    usage = {"input_tokens": record.text_chars, "output_tokens": sent, "total_tokens": record.text_chars + sent}
    yield "data: " + json.dumps({"type": "speech.audio.done", "usage": usage}) + "\n\n"


@bp.post("/v1/audio/speech")
def create_speech():
    """The audio streams as it is made (chunked transfer), which both the SDK's plain `create` and
    its `with_streaming_response` read; flac, which cannot stream, comes whole."""
    try:
        speech = SpeechRequest.model_validate(json_body())
    except ValidationError as exc:
        raise validation_error(exc) from None
    _check_model(speech.model)
    job = parse_job_request(_job_body(speech))
    fmt = speech.response_format
    timeout_s = services.get().settings.limits.speech_timeout_s
    record = blocking.start(job)
    if fmt in streams.STREAMABLE or speech.stream_format == "sse":
        record, _, ready = streams.first_audio(record, timeout_s)
        if record.status in ("queued", "running") and not ready:
            submission.cancel(record.id)
            raise _timed_out(timeout_s)
    else:
        try:
            record = blocking.wait(record, timeout_s)
        except blocking.TimedOut as exc:
            raise _timed_out(exc.timeout_s) from None
    if record.status in ("failed", "canceled"):
        raise blocking.failure(record)
    if speech.stream_format == "sse":
        response = Response(stream_with_context(_sse(record, fmt)), mimetype="text/event-stream")
        response.headers["Cache-Control"] = "no-store"
    elif record.status == "succeeded":
        path = services.get().storage.audio_path(record.id, record.options.format)
        response = send_file(path, mimetype=SPEECH_TYPES[fmt], max_age=0, download_name=f"speech.{fmt}")
    else:
        response = Response(stream_with_context(streams.audio_chunks(record)), mimetype=SPEECH_TYPES[fmt])
        response.headers["Cache-Control"] = "no-store"
    response.headers["X-Voxq-Job-Id"] = record.id
    return response
