"""The job schema: what a client sends, what a job record holds, and what the API shows."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator

from shared.options import SynthesisOptions
from shared.text.frontend import trim

Status = Literal["queued", "running", "succeeded", "failed", "canceled"]
TextType = Literal["text", "ssml"]
LexiconName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
TERMINAL = ("succeeded", "failed", "canceled")
Priority = Literal["interactive", "batch"]
# Text as every face counts, stores and speaks it: trailing whitespace off, before any length check.
SpokenText = Annotated[str, BeforeValidator(lambda value: trim(value) if isinstance(value, str) else value)]


def now() -> datetime:
    return datetime.now(timezone.utc)


class JobRequest(SynthesisOptions):
    """POST /v1/jobs body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: SpokenText = Field(..., description="the text to speak (UTF-8): plain text, or SSML when text_type is "
                               "ssml; trailing whitespace is no part of it")
    text_type: TextType = Field("text", description="ssml: text is an SSML document (the Chinese subset in the README)")
    lexicons: list[LexiconName] | None = Field(
        None, max_length=32,
        description="names of the caller's lexicons to apply, in priority order; absent: the tenant's defaults")
    callback_url: str | None = Field(None, max_length=2048)
    metadata: dict[str, Any] | None = Field(None, description="echoed back; at most 4 KB as JSON")
    priority: Priority = "interactive"

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value):
        if value is not None and len(json.dumps(value, ensure_ascii=False).encode()) > 4096:
            raise ValueError("metadata is larger than 4096 bytes as JSON")
        return value

    def options(self) -> SynthesisOptions:
        return SynthesisOptions(**self.model_dump(include=set(SynthesisOptions.model_fields)))


class Progress(BaseModel):
    """Segments and chunks spoken so far; the totals are known once the job is planned."""

    segments_done: int = 0
    segments_total: int | None = None
    chunks_done: int = 0
    chunks_total: int | None = None


class _Audio(BaseModel):
    format: str
    sample_rate: int
    duration_s: float
    bytes: int
    sha256: str
    loudness_lufs: float | None = Field(None, description="the file's integrated loudness (BS.1770), when loudness is on")
    true_peak_dbtp: float | None = Field(None, description="the file's true peak, when loudness is on")


class AudioResult(_Audio):
    """A finished job's audio: what the worker that assembles it (or `voxq synth`) makes and the
    job's record keeps; every face shows it with its URLs (Result)."""

    marks: bool = False  # whether the job has a marks file


class Result(_Audio):
    """A finished job's audio as the API shows it."""

    audio_url: str
    marks_url: str | None = None


class JobError(BaseModel):
    code: str
    message: str


class WebhookState(BaseModel):
    status: Literal["pending", "delivering", "delivered", "failed", "disabled"] = "pending"
    attempts: int = 0
    last_status_code: int | None = None
    next_attempt_at: datetime | None = None


# The hops of a job's first audio, in order, each timed once (epoch seconds) in its record:
# accepted (stored by the API), published (queued), picked_up (a worker's first task began),
# planned (its first chunk planned), first_samples (the engine's first audio out), first_audio
# (that audio visible to the API: in the job's piece stream, or its first chunk landed),
# first_byte (the API sent the first audio byte to a client).
HOPS = ("accepted", "published", "picked_up", "planned", "first_samples", "first_audio", "first_byte")


class JobRecord(BaseModel):
    """What Redis holds for a job (the text itself is stored apart, never in this record)."""

    id: str
    owner: str = "anonymous"
    status: Status = "queued"
    priority: Priority = "interactive"
    options: SynthesisOptions
    text_chars: int
    text_sha256: str
    text_type: TextType = "text"
    lexicons: list[str] = []  # resolved at submission: the request's, or the tenant's defaults
    callback_url: str | None = None
    metadata: dict[str, Any] | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: Progress = Progress()
    result: AudioResult | None = None
    error: JobError | None = None
    cache_hit: bool = False
    attempts: int = 0
    webhook: WebhookState | None = None
    timings: dict[str, float] = {}  # hop -> epoch seconds (HOPS)
    # A live session's sentence: spoken as one chunk, the unit a session streams and cancels.
    live_session: str | None = None


class JobView(BaseModel):
    """GET /v1/jobs/{id}."""

    id: str
    status: Status
    priority: Priority
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: Progress
    options: SynthesisOptions
    text_chars: int
    metadata: dict[str, Any] | None = None
    result: Result | None = None
    error: JobError | None = None
    cache_hit: bool = False
    webhook: WebhookState | None = None
    links: dict[str, str]
    timings: dict[str, float] | None = Field(
        None, description="with ?timings=1: when each hop of the first audio happened (epoch seconds)")


class JobAccepted(BaseModel):
    id: str
    status: Status
    created_at: datetime
    links: dict[str, str]


class JobList(BaseModel):
    jobs: list[JobView]
    next_cursor: str | None = None


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


def job_view(record: JobRecord, base: str = "/v1/jobs") -> JobView:
    """The job as GET {base}/{id} shows it; the API passes its own mount point, a webhook the default."""
    result = None
    if record.status == "succeeded" and record.result:
        result = Result(**record.result.model_dump(exclude={"marks"}), audio_url=f"{base}/{record.id}/audio",
                        marks_url=f"{base}/{record.id}/marks" if record.result.marks else None)
    return JobView(
        id=record.id, status=record.status, priority=record.priority, created_at=record.created_at,
        started_at=record.started_at, finished_at=record.finished_at, progress=record.progress,
        options=record.options, text_chars=record.text_chars, metadata=record.metadata,
        result=result, error=record.error, cache_hit=record.cache_hit, webhook=record.webhook,
        links={"self": f"{base}/{record.id}", "audio": f"{base}/{record.id}/audio"},
    )
