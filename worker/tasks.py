"""Celery tasks: thin. They decode the job ID, call the runner, and let Celery retry Redis blips."""
from __future__ import annotations

import logging

import redis
from celery import shared_task

from shared import tasks
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
    status = context.runner().run(job_id)
    if status in ("succeeded", "failed", "canceled"):
        metrics.JOBS_FINISHED.labels(status).inc()
    return status
