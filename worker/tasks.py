"""Celery tasks: thin. They decode the job ID, call the runner, and let Celery retry Redis blips."""
from __future__ import annotations

import logging
import time

import redis
from celery import shared_task

from shared import logs, tasks
from worker import context, metrics

log = logging.getLogger(__name__)


@shared_task(
    name=tasks.SYNTHESIZE,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(redis.ConnectionError, redis.TimeoutError),
    retry_backoff=True,
    max_retries=5,
)
def synthesize(job_id: str) -> str:
    started = time.perf_counter()
    status = context.runner().run(job_id)
    try:
        record = context.store().get(job_id)
    except redis.RedisError:  # only for metrics and the log line: never redo a finished job for it
        record = None
    if status in ("succeeded", "failed", "canceled"):
        metrics.job_finished(status, record)
    fields = {"status": status, "duration_s": round(time.perf_counter() - started, 3)}
    log.info("job %s ended: %s", job_id, status,
             extra=logs.job_fields(record, **fields) if record else {"job_id": job_id, **fields})
    return status
