"""GET /openapi.json: OpenAPI 3.1 for every endpoint, its schemas generated from the pydantic models.

The operations are declared here, in code, and name the models the views validate and return
(shared.jobs, api.openai_speech, api.seed); every schema under components comes from
`models_json_schema`, never from a hand-kept copy. A few views build plain dicts (health,
voices, marks): their shapes are pydantic models below, so they too are generated.
tests/test_openapi.py checks that every route of the app is described here and the reverse.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from flask import Blueprint, current_app, jsonify
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from api.openai_speech import OpenAIError, SpeechRequest
from api.preview import PreviewRequest
from api.seed import SeedError, SeedForm, SeedSuccess
from shared.jobs import ErrorResponse, JobAccepted, JobList, JobRequest, JobView
from shared.options import CONTENT_TYPES, SAMPLE_RATES

bp = Blueprint("openapi", __name__)

REF_TEMPLATE = "#/components/schemas/{model}"
JOB_ID_PATTERN = "^[0-9a-f]{32}$"


# Shapes of the views that build plain dicts.
class Health(BaseModel):
    status: Literal["ok"]


class StorageState(BaseModel):
    writable: bool
    free_bytes: int
    size_bytes: int
    problem: str | None = Field(None, description="why audio cannot be written now (full, read-only)")


class Ready(BaseModel):
    status: Literal["ready", "degraded"] = Field(description="degraded: the audio storage takes no writes")
    workers: int
    storage: StorageState


class VoiceInfo(BaseModel):
    name: str
    language: str | None = None
    gender: str | None = None
    description: str | None = None


class Limits(BaseModel):
    max_chars: int
    speed: list[float]
    pitch: list[float]
    volume: list[float]


class EngineCapabilities(BaseModel):
    """One engine as its workers registered it."""

    engine: str
    model_version: str | None = None
    native_sample_rate: int
    device: str | None = None
    voices: list[VoiceInfo]
    emotions: list[str]
    formats: list[str]
    sample_rates: list[int]
    opus_sample_rates: list[int] = []
    format_sample_rates: dict[str, list[int]] = Field({}, description="each format's rates (G.711: 8000 only)")
    default_loudness_lufs: dict[str, float] = Field({}, description="each format's loudness target when a request gives none")
    loudness_range_lufs: list[float] = []
    true_peak_ceiling_dbtp: float | None = None
    limits: Limits


class Voices(BaseModel):
    engines: list[EngineCapabilities]
    default_engine: str


class Mark(BaseModel):
    """One timing mark. `char`: a spoken character; `sentence`: a segment of speech (a long
    sentence is several); `mark`: an SSML <mark name> (value is the name, start_ms == end_ms)."""

    type: Literal["char", "sentence", "mark"]
    value: str
    start_ms: float
    end_ms: float
    start: int | None = Field(None, description="char and sentence: where what it reads starts in the text sent")
    end: int | None = Field(None, description="char and sentence: [start, end) in the text sent (for SSML, the document)")


class LexiconEntry(BaseModel):
    grapheme: str = Field(..., max_length=64, examples=["行长"])
    phoneme: str | None = Field(None, description="tone-numbered pinyin, one syllable per character",
                                examples=["hang2 zhang3"])
    alias: str | None = Field(None, max_length=256, description="text read instead", examples=["爱疯"])


class LexiconJson(BaseModel):
    """The JSON form of a lexicon (the other is W3C PLS XML, application/pls+xml)."""

    entries: list[LexiconEntry]


class LexiconSummary(BaseModel):
    name: str
    format: Literal["pls", "json"]
    entries: int
    sha256: str = Field(..., description="of the content: part of the cache key of every job that uses it")
    updated_at: str
    links: dict[str, str]


class LexiconList(BaseModel):
    lexicons: list[LexiconSummary]
    defaults: list[str]


class LexiconDefaults(BaseModel):
    lexicons: list[str] = Field(..., description="lexicons used by requests that name none, in priority order")


class PreviewChar(BaseModel):
    char: str
    pinyin: str = Field(..., description="tone-numbered, 5 for the neutral tone")
    pinyin_marked: str = Field(..., description="the same syllable with tone marks, as people read it (jīn, lǜ; "
                               "the neutral tone unmarked)", examples=["háng"])
    source: Literal["dictionary", "word", "sandhi", "lexicon", "ssml"]
    start: int | None = None
    end: int | None = None


class PreviewSegment(BaseModel):
    text: str
    pause: Literal["sentence", "clause", "none"]
    pause_s: float | None = None
    rate: float
    pitch: float
    volume: float
    pitch_range: float
    marks: list[dict[str, Any]]
    chars: list[PreviewChar]


class Preview(BaseModel):
    text_type: Literal["text", "ssml"]
    lexicons: list[str]
    normalized: str
    segments: list[PreviewSegment]


class AudioBase64(BaseModel):
    id: str
    format: str
    content_type: str
    sample_rate: int
    audio_base64: str = Field(..., description="the audio file, base64-encoded")


@dataclass(frozen=True)
class Ref:
    """A place in the document where a model's schema goes."""

    model: type[BaseModel]
    mode: Literal["validation", "serialization"] = "serialization"


# --- building blocks ---------------------------------------------------------------------------
JSON = "application/json"
ERROR_TEXT = {
    400: "malformed request", 401: "an API key is required, or the one sent is not valid",
    404: "no such resource (another key's job looks exactly like none)", 409: "conflict with the job's state",
    413: "too large (body, text, or a day's characters)", 415: "wrong Content-Type", 422: "invalid input",
    429: "a per-key limit was reached; see Retry-After", 500: "internal error",
    503: "Redis or the queue is unavailable; see Retry-After", 504: "not ready within VOXQ_SPEECH_TIMEOUT_S",
    426: "a WebSocket path asked without the upgrade",
}


def _json(ref_or_schema, description: str, headers: dict | None = None) -> dict:
    response: dict[str, Any] = {"description": description, "content": {JSON: {"schema": ref_or_schema}}}
    if headers:
        response["headers"] = headers
    return response


def _errors(*codes: int, model: type[BaseModel] = ErrorResponse) -> dict:
    return {str(code): _json(Ref(model), ERROR_TEXT[code]) for code in codes}


def _binary(media_types, description: str) -> dict:
    return {"description": description,
            "content": {media: {"schema": {"type": "string", "contentMediaType": media}} for media in media_types}}


def _job_id_param() -> dict:
    return {"name": "job_id", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": JOB_ID_PATTERN}}


V1_ERRORS = (401, 429, 503)  # any /v1 call, before its own checks
PUBLIC: list = []  # `security` of an operation that needs no key


def operations() -> dict[str, dict[str, dict]]:
    """path -> method -> operation, with Ref markers where model schemas go."""
    job_id = _job_id_param()
    audio_types = sorted({*CONTENT_TYPES.values(), "audio/L16"})
    return {
        "/": {"get": {
            "summary": "The web page: type, listen, download", "tags": ["web"], "security": PUBLIC,
            "responses": {"200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}},
        }},
        "/docs": {"get": {
            "summary": "Interactive documentation of this API (Swagger UI over /openapi.json)", "tags": ["web"],
            "security": PUBLIC,
            "responses": {"200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}},
        }},
        "/healthz": {"get": {
            "summary": "Liveness", "tags": ["health"], "security": PUBLIC,
            "responses": {"200": _json(Ref(Health), "the process answers")},
        }},
        "/readyz": {"get": {
            "summary": "Readiness: Redis answers and a worker sent a recent heartbeat", "tags": ["health"],
            "security": PUBLIC,
            "responses": {"200": _json(Ref(Ready), "ready"), **_errors(503)},
        }},
        "/metrics": {"get": {
            "summary": "Prometheus metrics of the API processes", "tags": ["health"], "security": PUBLIC,
            "responses": {"200": {"description": "Prometheus text exposition format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}},
        }},
        "/openapi.json": {"get": {
            "summary": "This document", "tags": ["health"], "security": PUBLIC,
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
        }},
        "/v1/voices": {"get": {
            "summary": "Engines, voices, emotions, formats, rates and limits, as the workers registered them",
            "tags": ["jobs"],
            "responses": {"200": _json(Ref(Voices), "what the cluster can do"), **_errors(*V1_ERRORS)},
        }},
        "/v1/jobs": {
            "post": {
                "summary": "Submit a job", "tags": ["jobs"],
                "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                "schema": {"type": "string", "maxLength": 255},
                                "description": "the same key and body within 24 h answer with the same job"}],
                "requestBody": {"required": True, "content": {JSON: {"schema": Ref(JobRequest, "validation")}}},
                "responses": {
                    "202": _json(Ref(JobAccepted), "queued",
                                 {"Location": {"schema": {"type": "string"}, "description": "the job's URL"}}),
                    "200": _json(Ref(JobAccepted), "the job this Idempotency-Key already created"),
                    **_errors(400, 409, 413, 415, 422, *V1_ERRORS),
                },
            },
            "get": {
                "summary": "The caller's jobs, newest first", "tags": ["jobs"],
                "parameters": [
                    {"name": "status", "in": "query", "required": False,
                     "schema": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "canceled"]}},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
                    {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"},
                     "description": "next_cursor of the previous page"},
                ],
                "responses": {"200": _json(Ref(JobList), "a page of jobs"), **_errors(422, *V1_ERRORS)},
            },
        },
        "/v1/jobs/{job_id}": {
            "parameters": [job_id],
            "get": {
                "summary": "A job's status, progress and result", "tags": ["jobs"],
                "responses": {"200": _json(Ref(JobView), "the job"), **_errors(404, *V1_ERRORS)},
            },
            "delete": {
                "summary": "Cancel a queued or running job; delete a finished one and its files", "tags": ["jobs"],
                "responses": {"204": {"description": "deleted"}, "202": _json(Ref(JobView), "canceled"),
                              **_errors(404, *V1_ERRORS)},
            },
        },
        "/v1/jobs/{job_id}/audio": {
            "parameters": [job_id],
            "get": {
                "summary": "The audio of a finished job (Range and If-None-Match supported)", "tags": ["jobs"],
                "parameters": [{"name": "encoding", "in": "query", "required": False,
                                "schema": {"type": "string", "enum": ["base64"]},
                                "description": "base64: a JSON object with the audio inside"}],
                "responses": {
                    "200": {"description": "the audio file (pcm: audio/L16 with rate and channels), or base64 JSON",
                            "content": {**_binary(audio_types, "")["content"], JSON: {"schema": Ref(AudioBase64)}}},
                    "206": _binary(audio_types, "the requested byte range"),
                    "304": {"description": "not modified"},
                    "416": {"description": "range not satisfiable"},
                    **_errors(404, 409, 422, *V1_ERRORS),
                },
            },
        },
        "/v1/jobs/{job_id}/stream": {
            "parameters": [job_id],
            "get": {
                "summary": "The job's audio as its chunks land (chunked transfer), from the start; the file once "
                           "it succeeded", "tags": ["jobs"],
                "description": "wav and pcm: exactly the file's audio (wav with a streaming header); mp3, ogg and "
                               "opus: each chunk encoded on its own, in order. A job that fails or is canceled "
                               "mid-stream ends it without the final empty chunk of the chunked encoding.",
                "responses": {
                    "200": {**_binary(audio_types, "the audio as it is made"),
                            "headers": {"X-Voxq-Sample-Rate": {"schema": {"type": "string"}}}},
                    **_errors(404, 409, *V1_ERRORS),
                },
            },
        },
        "/v1/live": {
            "get": {
                "summary": "A live session (WebSocket): text in as it is written, audio and sentence events out",
                "tags": ["live"],
                "description": "Upgrade to a WebSocket. First message {\"type\": \"start\", \"api_key\", ...options} "
                               "(format pcm, wav, mp3, opus, mulaw-raw or alaw-raw; the job options; lexicons, "
                               "pronunciations, marks, save); then {\"type\": \"text\", \"text\"}, "
                               "{\"type\": \"flush\"}, {\"type\": \"cancel\"} (barge-in: no audio after its "
                               "acknowledgement) and {\"type\": \"finish\"}. The server sends the audio as binary "
                               "frames and JSON events: started, sentence_started, sentence_ended (offsets into the "
                               "text sent, audio times, marks), canceled, finished, error (the REST API's codes); it "
                               "closes with 1000, or 4400, 4401, 4408, 4409, 4413, 4429 on an error. Aliyun "
                               "DashScope's SDK protocol is served at /api-ws/v1/inference. README, \"Live speech\".",
                "responses": {"101": {"description": "switching to the WebSocket protocol"}, **_errors(426)},
            },
        },
        **{path: {"get": {
            "summary": "Aliyun DashScope's speech-synthesis WebSocket (CosyVoice tts_v2 and Sambert): the "
                       "dashscope SDK works unchanged with its URL pointed here", "tags": ["live"],
            "description": "run-task / continue-task / finish-task in, task-started, result-generated, binary "
                           "audio, task-finished / task-failed out, one live session per task. README, "
                           "\"Migrating from DashScope\".",
            "responses": {"101": {"description": "switching to the WebSocket protocol"}, **_errors(426)},
        }} for path in ("/api-ws/v1/inference", "/api-ws/v1/inference/")},
        "/v1/jobs/{job_id}/marks": {
            "parameters": [job_id],
            "get": {
                "summary": "Per-character timing marks of a job submitted with marks: true", "tags": ["jobs"],
                "responses": {
                    "200": _json({"type": "array", "items": Ref(Mark)}, "the marks"),
                    "304": {"description": "not modified"},
                    **_errors(404, 409, *V1_ERRORS),
                },
            },
        },
        "/v1/jobs/{job_id}/subtitles": {
            "parameters": [job_id],
            "get": {
                "summary": "Sentence subtitles (SRT or WebVTT) from the marks of a job submitted with marks: true",
                "tags": ["jobs"],
                "parameters": [
                    {"name": "format", "in": "query", "required": False,
                     "schema": {"type": "string", "enum": ["srt", "vtt"], "default": "srt"}},
                    {"name": "max_chars", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 4, "maximum": 500},
                     "description": "split longer sentences (default VOXQ_SUBTITLE_MAX_CHARS)"},
                ],
                "responses": {
                    "200": {"description": "the subtitles", "content": {
                        "application/x-subrip": {"schema": {"type": "string"}},
                        "text/vtt": {"schema": {"type": "string"}}}},
                    **_errors(404, 409, 422, *V1_ERRORS),
                },
            },
        },
        "/v1/lexicons": {"get": {
            "summary": "The caller's lexicons and default list", "tags": ["lexicons"],
            "responses": {"200": _json(Ref(LexiconList), "the lexicons"), **_errors(*V1_ERRORS)},
        }},
        "/v1/lexicons/{name}": {
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"}}],
            "put": {
                "summary": "Store a lexicon (W3C PLS with pinyin phonemes or aliases, or JSON)", "tags": ["lexicons"],
                "requestBody": {"required": True, "content": {
                    "application/pls+xml": {"schema": {"type": "string"}},
                    JSON: {"schema": Ref(LexiconJson, "validation")}}},
                "responses": {"201": _json(Ref(LexiconSummary), "created"),
                              "200": _json(Ref(LexiconSummary), "replaced"),
                              **_errors(400, 409, 413, 422, *V1_ERRORS)},
            },
            "get": {
                "summary": "A lexicon's content, as it was stored", "tags": ["lexicons"],
                "responses": {"200": {"description": "the lexicon", "content": {
                    "application/pls+xml": {"schema": {"type": "string"}},
                    JSON: {"schema": Ref(LexiconJson, "validation")}}},
                    **_errors(404, *V1_ERRORS)},
            },
            "delete": {
                "summary": "Delete a lexicon (and take it off the default list)", "tags": ["lexicons"],
                "responses": {"204": {"description": "deleted"}, **_errors(404, *V1_ERRORS)},
            },
        },
        "/v1/lexicon-defaults": {
            "get": {
                "summary": "The lexicons requests use when they name none", "tags": ["lexicons"],
                "responses": {"200": _json(Ref(LexiconDefaults), "the defaults"), **_errors(*V1_ERRORS)},
            },
            "put": {
                "summary": "Set the default lexicons", "tags": ["lexicons"],
                "requestBody": {"required": True, "content": {JSON: {"schema": Ref(LexiconDefaults, "validation")}}},
                "responses": {"200": _json(Ref(LexiconDefaults), "the defaults"),
                              **_errors(422, *V1_ERRORS)},
            },
        },
        "/v1/text/preview": {"post": {
            "summary": "What the voice will say: normalised text, segments, and each character's pinyin and its source",
            "tags": ["text"],
            "requestBody": {"required": True, "content": {JSON: {"schema": Ref(PreviewRequest, "validation")}}},
            "responses": {"200": _json(Ref(Preview), "the preview"),
                          **_errors(400, 413, 415, 422, *V1_ERRORS)},
        }},
        "/v1/jobs/{job_id}/webhook/redeliver": {
            "parameters": [job_id],
            "post": {
                "summary": "Send the job's webhook again (and lift a 410's block on its URL)", "tags": ["webhooks"],
                "responses": {"202": _json(Ref(JobView), "queued for delivery"),
                              **_errors(404, 409, 422, *V1_ERRORS)},
            },
        },
        "/v1/audio/speech": {
            "post": {
                "summary": "OpenAI-compatible speech: answers with the audio itself", "tags": ["compatibility"],
                "description": "See api/openai_speech.py for how models, voices and instructions map.",
                "requestBody": {"required": True, "content": {JSON: {"schema": Ref(SpeechRequest, "validation")}}},
                "responses": {
                    "200": {"description": "the audio as it is made (pcm: raw 24 kHz 16-bit little-endian "
                                           "mono), or with stream_format sse, speech.audio.delta events and a "
                                           "closing speech.audio.done",
                            "content": {**_binary(("audio/mpeg", "audio/ogg", "audio/aac", "audio/flac",
                                                   "audio/wav", "audio/pcm"), "")["content"],
                                        # Each event: data is JSON, {"type": "speech.audio.delta", "audio"}
                                        # or {"type": "speech.audio.done", "usage"} (or "error").
                                        "text/event-stream": {"schema": {
                                            "type": "object", "required": ["data"],
                                            "properties": {"event": {"type": "string"},
                                                           "data": {"type": "string",
                                                                    "contentMediaType": "application/json"}}}}},
                            "headers": {"X-Voxq-Job-Id": {"schema": {"type": "string"}}}},
                    **_errors(400, 401, 404, 409, 413, 415, 429, 500, 503, 504, model=OpenAIError),
                },
            },
        },
        "/tts": {
            "post": {
                "summary": "The original service's endpoint: waits, then gives the audio URL",
                "tags": ["compatibility"],
                "requestBody": {"required": True, "content": {
                    "application/x-www-form-urlencoded": {"schema": Ref(SeedForm, "validation")},
                    "multipart/form-data": {"schema": Ref(SeedForm, "validation")},
                }},
                "responses": {
                    "200": _json(Ref(SeedSuccess), "spoken; audio_url is the job's audio"),
                    **_errors(400, 401, 409, 413, 415, 422, 429, 500, 503, 504, model=SeedError),
                },
            },
        },
    }


def _collect(node, found: set) -> None:
    if isinstance(node, Ref):
        found.add((node.model, node.mode))
    elif isinstance(node, dict):
        for value in node.values():
            _collect(value, found)
    elif isinstance(node, list):
        for value in node:
            _collect(value, found)


def _resolve(node, refs: dict):
    if isinstance(node, Ref):
        return refs[(node.model, node.mode)]
    if isinstance(node, dict):
        return {key: _resolve(value, refs) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(value, refs) for value in node]
    return node


def document(version: str = "0.1.0") -> dict:
    paths = operations()
    used: set = set()
    _collect(paths, used)
    # One pass over every model: shared sub-models get one entry, and a model whose input and
    # output schemas differ gets both (pydantic names them -Input and -Output).
    refs, top = models_json_schema(sorted(used, key=lambda pair: (pair[0].__name__, pair[1])),
                                   ref_template=REF_TEMPLATE)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "voxq",
            "version": version,
            "description": "Self-hosted, distributed Chinese text-to-speech. Submit a job, poll it (or get a "
                           "webhook), fetch the audio. Sample rates: " + ", ".join(map(str, SAMPLE_RATES)) + ".",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {}],
        "tags": [{"name": name} for name in ("jobs", "lexicons", "text", "webhooks", "compatibility", "web", "health")],
        "paths": _resolve(paths, refs),
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "an API key; needed once keys are configured (VOXQ_API_KEYS)",
            }},
        },
    }


@bp.get("/openapi.json")
def openapi_json():
    if "voxq.openapi" not in current_app.extensions:
        current_app.extensions["voxq.openapi"] = document()
    return jsonify(current_app.extensions["voxq.openapi"])
