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


def submit(job: JobRequest, owner: str, replicate: bool = True, via: str | None = None,
           live_session: str | None = None, message_priority: int = tasks.FIRST_CHUNK_PRIORITY) -> JobRecord:
    """Store the job, then publish it. The record exists before anyone hears of the job.

    `replicate`: wait for the job to reach the replicas (see `replicated`); False for a caller
    that writes more first (an Idempotency-Key record), then waits for all of it. `via`: the
    interface that took it, for the metrics (default: the request's blueprint). `live_session`: the
    session whose sentence this is (spoken as one chunk); `message_priority`: its first task's."""
    svc = services.get()
    record = svc.store.jobs.create(job, owner, live_session=live_session)
    try:
        tasks.send_first_task(svc.celery, svc.store, svc.settings, record.id, record.priority, record.text_chars,
                              message_priority)
    except OperationalError:
        svc.store.jobs.discard(record)
        raise ApiError(503, "unavailable", "the queue is unavailable; retry shortly", headers={"Retry-After": "5"})
    svc.store.jobs.mark(record.id, "published")
    if replicate:
        replicated(record)
    log.info("job %s queued: %d chars, priority %s", record.id, record.text_chars, record.priority,
             extra=logs.job_fields(record, status="queued"))
    metrics.job_submitted(record.priority, via)
    return record


def promote(record: JobRecord) -> bool:
    """Send a job's first task again at first-chunk priority, while it still waits in the queue at
    a lower one: its listener has almost nothing left to play (api/live_session.py). Whichever copy
    a worker takes first runs the job; the other is skipped (worker/runner.py, Runner.run)."""
    svc = services.get()
    if svc.store.jobs.status(record.id) != "queued":
        return False
    tasks.send_first_task(svc.celery, svc.store, svc.settings, record.id, record.priority, record.text_chars)
    return True


def replicated(record: JobRecord) -> None:
    """Before a 202: wait until the job (its record, its message, anything written before) is on
    the replicas VOXQ_REDIS_WAIT_REPLICAS asks for, so a failover right after cannot lose it. When
    too few confirm within VOXQ_REDIS_WAIT_TIMEOUT_MS the job is withdrawn and the caller gets a
    503 to retry: a job we cannot keep is no job (README, "High availability")."""
    svc = services.get()
    if svc.store.replicated():
        return
    log.warning("job %s withdrawn: fewer than %d Redis replica(s) confirmed it within %d ms", record.id,
                svc.store.wait_replicas, svc.store.wait_timeout_ms)
    metrics.job_unreplicated()
    svc.store.jobs.discard(record)
    raise ApiError(503, "unavailable", "the job store could not copy the job to a replica in time; retry shortly",
                   headers={"Retry-After": "2"})


def cancel(job_id: str) -> tuple[bool, str]:
    """Cancel a queued or running job: (whether this call canceled it, the status before).
    The chunks that landed go too; a worker removes any that land after (worker/runner.py)."""
    svc = services.get()
    ok, previous = svc.store.jobs.cancel(job_id)
    if ok:
        ChunkFiles(svc.storage, job_id).delete()
    return ok, previous
