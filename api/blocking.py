"""Submit a job and wait for its end: the core of the synchronous endpoints (/v1/audio/speech, /tts).

They run as ordinary interactive jobs (same queue, cache, limits and records as POST /v1/jobs) and
hold the HTTP request open until the job ends or VOXQ_SPEECH_TIMEOUT_S (default 60) passes. A job
whose caller gave up is canceled: nobody is left to fetch its audio.
"""
from __future__ import annotations

import time

from api import auth, services
from api.errors import ApiError
from api.submission import cancel, submit
from shared.jobs import TERMINAL, JobRecord, JobRequest

# Job error codes that mean "the request cannot be spoken": the caller's fault (4xx), not ours.
INPUT_ERRORS = frozenset({"empty_text", "nothing_to_say", "text_too_long", "unknown_voice", "unknown_emotion",
                          "unsupported_sample_rate", "invalid_request", "unknown_lexicon", "invalid_ssml",
                          "malformed_ssml", "unsupported_ssml", "forbidden_xml"})


class TimedOut(Exception):
    def __init__(self, record: JobRecord, timeout_s: float):
        super().__init__(f"the job did not finish within {timeout_s:g} s")
        self.record = record
        self.timeout_s = timeout_s


def start(job: JobRequest) -> JobRecord:
    """Charge the caller and submit the job."""
    owner = auth.owner()
    auth.charge(owner, len(job.text))
    return submit(job, owner)


def run(job: JobRequest) -> JobRecord:
    """Charge, submit and wait; return the job's final record, or raise TimedOut (after canceling it)."""
    return wait(start(job), services.get().settings.limits.speech_timeout_s)


def wait(record: JobRecord, timeout_s: float) -> JobRecord:
    jobs = services.get().store.jobs
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        status = jobs.status(record.id)
        if status is None or status in TERMINAL:
            break
        if time.monotonic() >= deadline:
            ok, previous = cancel(record.id)
            if ok or previous not in TERMINAL:
                raise TimedOut(jobs.get(record.id) or record, timeout_s)
            break  # it ended while we gave up: use it
        # Short jobs end in well under a second: poll fast at first, then ease off.
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 0.25)
    # A job deleted while we waited (DELETE /v1/jobs/{id}) ended as far as this caller can tell.
    return jobs.get(record.id) or record.model_copy(update={"status": "canceled"})


def failure(record: JobRecord) -> ApiError:
    """Why a job that ended has no audio, as the error a synchronous endpoint answers with."""
    if record.status == "canceled":
        return ApiError(409, "canceled", "the job was canceled before it finished")
    error = record.error
    code, message = (error.code, error.message) if error else (record.status, f"the job ended {record.status}")
    if code in INPUT_ERRORS:
        return ApiError(422, code, message, "text")
    return ApiError(500, code, message)
