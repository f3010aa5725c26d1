"""Submit a job and wait for its end: the core of the synchronous endpoints (/v1/audio/speech, /tts).

They run as ordinary interactive jobs (same queue, cache, limits and records as POST /v1/jobs) and
hold the HTTP request open until the job ends or VOXQ_SPEECH_TIMEOUT_S (default 60) passes. A job
whose caller gave up is canceled: nobody is left to fetch its audio.
"""
from __future__ import annotations

import os
import time

from flask import Flask, current_app

from api import services
from api.errors import ApiError
from api.jobs import current_owner, submit
from shared.jobs import TERMINAL, JobRecord, JobRequest

DEFAULT_TIMEOUT_S = 60.0

# Job error codes that mean "the request cannot be spoken": the caller's fault (4xx), not ours.
INPUT_ERRORS = frozenset({"empty_text", "nothing_to_say", "text_too_long", "unknown_voice", "unknown_emotion",
                          "unsupported_sample_rate", "invalid_request"})


class TimedOut(Exception):
    def __init__(self, record: JobRecord, timeout_s: float):
        super().__init__(f"the job did not finish within {timeout_s:g} s")
        self.record = record
        self.timeout_s = timeout_s


def configure(app: Flask) -> None:
    """Read the wait limit once, when a synchronous blueprint is registered (a test's config wins)."""
    if "SPEECH_TIMEOUT_S" not in app.config:
        raw = os.environ.get("VOXQ_SPEECH_TIMEOUT_S") or DEFAULT_TIMEOUT_S
        timeout = float(raw)
        if not timeout > 0:
            raise ValueError(f"VOXQ_SPEECH_TIMEOUT_S must be a positive number of seconds, got {raw!r}")
        app.config["SPEECH_TIMEOUT_S"] = timeout


def run(job: JobRequest) -> JobRecord:
    """Charge, submit and wait; return the job's final record, or raise TimedOut (after canceling it)."""
    from api import auth

    owner = current_owner()
    auth.charge(owner, len(job.text))
    record = submit(job, owner)
    return wait(record, float(current_app.config.get("SPEECH_TIMEOUT_S", DEFAULT_TIMEOUT_S)))


def wait(record: JobRecord, timeout_s: float) -> JobRecord:
    store = services.get().store
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        status = store.status(record.id)
        if status is None or status in TERMINAL:
            break
        if time.monotonic() >= deadline:
            ok, previous = store.cancel(record.id)
            if ok or previous not in TERMINAL:
                store.redis.delete(store.text_key(record.id))
                raise TimedOut(store.get(record.id) or record, timeout_s)
            break  # it ended while we gave up: use it
        # Short jobs end in well under a second: poll fast at first, then ease off.
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 0.25)
    # A job deleted while we waited (DELETE /v1/jobs/{id}) ended as far as this caller can tell.
    return store.get(record.id) or record.model_copy(update={"status": "canceled"})


def failure(record: JobRecord) -> ApiError:
    """Why a job that ended has no audio, as the error a synchronous endpoint answers with."""
    if record.status == "canceled":
        return ApiError(409, "canceled", "the job was canceled before it finished")
    error = record.error
    code, message = (error.code, error.message) if error else (record.status, f"the job ended {record.status}")
    if code in INPUT_ERRORS:
        return ApiError(422, code, message, "text")
    return ApiError(500, code, message)
