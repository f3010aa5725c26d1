"""Celery tasks: thin. Each decodes its arguments, calls the real code, and records the outcome;
Celery's own retry handles Redis blips and webhook back-off."""
from __future__ import annotations

import logging
import time
from typing import Callable

from celery import shared_task

from shared import logs, tasks
from shared.store import Transient, Unavailable
from worker import context, metrics

log = logging.getLogger(__name__)


class JobFailed(Exception):
    """This task ended its job `failed` (already recorded): raised so that Flower and the events
    show a failure.

    Listed in the task's `throws`, so Celery logs it as an expected outcome without a traceback;
    with acks_late the message is still acknowledged (task_acks_on_failure_or_timeout), never
    redelivered, and it is not in autoretry_for, so it is never retried.
    """


# Both speech tasks: acknowledged only once done (a worker that dies gives its chunk back), retried
# by Celery on a Redis blip, and a failed job is an expected outcome, not an error. A task past its
# hard time limit (its hang bound, set per message: shared/tasks.py) has its pool process killed
# and its message requeued at once (acks_on_timeout=False), so another process speaks the chunk;
# each such run counts as an attempt (max_attempts).
SPEECH_TASK = dict(acks_late=True, reject_on_worker_lost=True, acks_on_timeout=False, autoretry_for=Transient,
                   retry_backoff=True, max_retries=5, throws=(JobFailed,))


@shared_task(bind=True, name=tasks.SYNTHESIZE, **SPEECH_TASK)
def synthesize(self, job_id: str) -> str:
    """A job's first task: plan it, dispatch its chunks, speak chunk 0."""
    from worker.runner import Counted  # not at import: a webhooks worker never loads the runner

    started = time.perf_counter()
    # kombu marks a message it hands back (its worker died, or its time limit killed the process)
    # redelivered, and Celery's retry counts: either is this job again, to run even though it is
    # `running`. Any other is fresh, and a fresh one for a running job is a duplicate.
    # The step again after a Redis outage (_through_outages) is this message again too: it may have
    # taken the job before Redis went away.
    request = self.request
    fresh = [not (request.delivery_info or {}).get("redelivered") and not request.retries]
    # Yet the step again is no new delivery of it either: the attempt bound counts this one once.
    counted = Counted()

    def step() -> str:
        try:
            return context.runner().run(job_id, fresh=fresh[0], counted=counted)
        finally:
            fresh[0] = False

    status = _through_outages(step)
    return _end(job_id, status, started, "planned and spoke chunk 0")


@shared_task(name=tasks.SYNTHESIZE_CHUNK, **SPEECH_TASK)
def synthesize_chunk(job_id: str, index: int, owner: str) -> str:
    from worker.runner import Counted

    started = time.perf_counter()
    counted = Counted()  # this delivery, counted once by the attempt bound however often its step runs
    status = _through_outages(lambda: context.runner().run_chunk(job_id, index, owner, counted))
    return _end(job_id, status, started, f"spoke chunk {index}")


# How long a task waits out a Redis outage in place before it gives up to Celery's retry.
OUTAGE_WAIT_S = 120


def _through_outages(step: Callable[[], str]) -> str:
    """Run a step again when Redis goes away under it, once Redis is back: the step is idempotent
    (a chunk that landed is not spoken again), and a run again is no new attempt (Counted).
    Celery's own retry cannot do this: it publishes the retry to the broker that is down, fails,
    and then rejects the message, losing the task."""
    delay, waited = 0.5, 0.0
    while True:
        try:
            status = step()
            _replicated("its chunk")
            return status
        except Transient:
            if waited >= OUTAGE_WAIT_S:
                raise
            log.warning("Redis is unavailable; trying again in %.1f s", delay)
            time.sleep(delay)
            waited += delay
            delay = min(5.0, delay * 2)


def _replicated(what: str) -> None:
    """Before the message is acknowledged: wait until what the step wrote (a chunk that landed,
    a job that ended, a delivery recorded) is on the replicas VOXQ_REDIS_WAIT_REPLICAS asks for.
    A failover then cannot lose it while the broker forgets the message, which would leave work
    done and unrecorded. Too few replicas in time: acknowledged anyway (the master has it), and a
    failover now would lose the record and run the work again, which chunks and deliveries
    allow (README, "High availability")."""
    if not context.current().store.replicated():
        log.warning("Redis replicas did not confirm %s in time; acknowledging anyway", what)


def _end(job_id: str, status: str, started: float, what: str) -> str:
    try:
        record = context.current().store.jobs.get(job_id)
    except Unavailable:  # only for the log line: never redo a finished job for it
        record = None
    fields = {"status": status, "duration_s": round(time.perf_counter() - started, 3)}
    log.info("job %s %s: %s", job_id, what, status,
             extra=logs.job_fields(record, **fields) if record else {"job_id": job_id, **fields})
    if status == "failed":  # this task ended the job: the runner says "skipped" for a job already over
        error = record.error if record is not None else None
        raise JobFailed(f"job {job_id} failed: {error.code}: {error.message}" if error else f"job {job_id} failed")
    return status


@shared_task(bind=True, name=tasks.DELIVER_WEBHOOK, acks_late=True, ignore_result=True, max_retries=None)
def deliver_webhook(self, job_id: str, webhook_id: str, generation: int = 0) -> str:
    outcome, retry_in = context.current().delivery.run(job_id, webhook_id, generation, self.request.retries)
    metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
    _replicated("the delivery")
    if retry_in is not None:
        raise self.retry(countdown=retry_in, argsrepr=repr([job_id]), kwargsrepr="{}")
    return outcome
