"""Celery tasks: thin. Each decodes its arguments, calls the real code, and records the outcome;
Celery's own retry handles Redis blips and webhook back-off."""
from __future__ import annotations

import logging
import time

from celery import shared_task

from shared import logs, tasks
from shared.store import Transient, Unavailable
from worker import context, metrics

log = logging.getLogger(__name__)


@shared_task(
    name=tasks.SYNTHESIZE,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=Transient,
    retry_backoff=True,
    max_retries=5,
)
def synthesize(job_id: str) -> str:
    """A job's first task: plan it, dispatch its chunks, speak chunk 0."""
    started = time.perf_counter()
    status = context.runner().run(job_id)
    _log_end(job_id, status, started, "planned and spoke chunk 0")
    return status


@shared_task(
    name=tasks.SYNTHESIZE_CHUNK,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=Transient,
    retry_backoff=True,
    max_retries=5,
)
def synthesize_chunk(job_id: str, index: int, owner: str) -> str:
    started = time.perf_counter()
    status = context.runner().run_chunk(job_id, index, owner)
    _log_end(job_id, status, started, f"spoke chunk {index}")
    return status


def _log_end(job_id: str, status: str, started: float, what: str) -> None:
    try:
        record = context.current().store.jobs.get(job_id)
    except Unavailable:  # only for the log line: never redo a finished job for it
        record = None
    fields = {"status": status, "duration_s": round(time.perf_counter() - started, 3)}
    log.info("job %s %s: %s", job_id, what, status,
             extra=logs.job_fields(record, **fields) if record else {"job_id": job_id, **fields})


@shared_task(bind=True, name=tasks.DELIVER_WEBHOOK, acks_late=True, ignore_result=True, max_retries=None)
def deliver_webhook(self, job_id: str, webhook_id: str, generation: int = 0) -> str:
    outcome, retry_in = context.current().delivery.run(job_id, webhook_id, generation, self.request.retries)
    metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
    if retry_in is not None:
        raise self.retry(countdown=retry_in, argsrepr="(hidden)", kwargsrepr="{}")
    return outcome
