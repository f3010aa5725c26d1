"""Celery tasks: thin. They decode the job ID, call the runner, and let Celery retry Redis blips."""
from __future__ import annotations

import logging
import time

import redis
from celery import shared_task

from shared import logs, tasks
from worker import context, metrics

log = logging.getLogger(__name__)


class JobFailed(Exception):
    """The job ended `failed` (already recorded): raised so that Flower and the events show a failure.

    Listed in the task's `throws`, so Celery logs it as an expected outcome without a traceback;
    with acks_late the message is still acknowledged (task_acks_on_failure_or_timeout), never
    redelivered, and it is not in autoretry_for, so it is never retried.
    """


@shared_task(
    name=tasks.SYNTHESIZE,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(redis.ConnectionError, redis.TimeoutError),
    retry_backoff=True,
    max_retries=5,
    throws=(JobFailed,),
)
def synthesize(job_id: str) -> str:
    started = time.perf_counter()
    status = context.runner().run(job_id)
    if status in ("succeeded", "failed", "canceled"):
        metrics.JOBS_FINISHED.labels(status).inc()
    try:
        record = context.store().get(job_id)
    except redis.RedisError:  # only for the log line: never redo a finished job for it
        record = None
    fields = {"status": status, "duration_s": round(time.perf_counter() - started, 3)}
    log.info("job %s ended: %s", job_id, status,
             extra=logs.job_fields(record, **fields) if record else {"job_id": job_id, **fields})
    if status == "failed":
        error = record.error if record is not None else None
        raise JobFailed(f"job {job_id} failed: {error.code}: {error.message}" if error else f"job {job_id} failed")
    return status
