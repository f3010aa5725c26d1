"""A checked request turned into a job: stored, then queued; and a job canceled. The record exists
before anyone hears of the job, and a job the queue would not take is no job at all."""
from __future__ import annotations

import logging

from kombu.exceptions import OperationalError

from api import metrics, services
from api.errors import ApiError
from shared import logs, tasks
from shared.chunk_files import ChunkFiles
from shared.jobs import JobRecord, JobRequest

log = logging.getLogger(__name__)


def submit(job: JobRequest, owner: str) -> JobRecord:
    """Store the job, then publish it. The record exists before anyone hears of the job."""
    svc = services.get()
    record = svc.store.jobs.create(job, owner)
    settings = svc.settings
    bound = settings.jobs.first_task_bound_s(record.text_chars, settings.text.first_chunk_s)
    try:
        tasks.send_job(svc.celery, record.id, svc.store.workers.queue_for(job.priority, settings.jobs.heartbeat_ttl_s),
                       time_limit=bound)
    except OperationalError:
        svc.store.jobs.discard(record)
        raise ApiError(503, "unavailable", "the queue is unavailable; retry shortly", headers={"Retry-After": "5"})
    svc.store.jobs.mark(record.id, "published")
    log.info("job %s queued: %d chars, priority %s", record.id, record.text_chars, record.priority,
             extra=logs.job_fields(record, status="queued"))
    metrics.job_submitted(record.priority)
    return record


def cancel(job_id: str) -> tuple[bool, str]:
    """Cancel a queued or running job: (whether this call canceled it, the status before).
    The chunks that landed go too; a worker removes any that land after (worker/runner.py)."""
    svc = services.get()
    ok, previous = svc.store.jobs.cancel(job_id)
    if ok:
        ChunkFiles(svc.storage, job_id).delete()
    return ok, previous
