"""Worker metrics (prometheus-client). Prefork children share them through multiprocess mode."""
from __future__ import annotations

from prometheus_client import Counter, Histogram

SYNTHESIS_SECONDS = Histogram(
    "voxq_synthesis_seconds", "Wall time to synthesize one chunk of a job", ["engine"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
RTF = Histogram(
    "voxq_synthesis_rtf", "Real-time factor (wall time / audio time) per chunk", ["engine"],
    buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2),
)
AUDIO_SECONDS = Counter("voxq_audio_seconds_total", "Seconds of audio produced", ["engine"])
CACHE_HITS = Counter("voxq_cache_hits_total", "Jobs served from the result cache")
FIRST_AUDIO_SECONDS = Histogram(
    "voxq_first_audio_seconds", "From a job's acceptance to its first audio visible to the API (worker side)",
    buckets=(0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0),
)
JOBS_FINISHED = Counter("voxq_jobs_finished_total", "Jobs that reached an end state", ["status"])
JOBS_FAILED = Counter("voxq_jobs_failed_total", "Failed jobs by error code", ["code"])
JOB_SECONDS = Histogram(
    "voxq_job_seconds", "Time from submission to the end of a job (queue wait included)", ["priority", "status"],
    buckets=(0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600),
)
WEBHOOK_DELIVERIES = Counter("voxq_webhook_deliveries_total", "Webhook delivery attempts", ["outcome"])


def job_finished(status: str, record) -> None:
    """Count a job that reached an end state; its record (None if Redis was away) adds code and latency."""
    JOBS_FINISHED.labels(status).inc()
    if record is None:
        return
    if status == "failed" and record.error is not None:
        JOBS_FAILED.labels(record.error.code).inc()
    if record.finished_at is not None:
        JOB_SECONDS.labels(record.priority, status).observe((record.finished_at - record.created_at).total_seconds())


def observe_synthesis(engine: str, wall_s: float, audio_s: float) -> None:
    SYNTHESIS_SECONDS.labels(engine).observe(wall_s)
    AUDIO_SECONDS.labels(engine).inc(audio_s)
    if audio_s > 0:
        RTF.labels(engine).observe(wall_s / audio_s)
