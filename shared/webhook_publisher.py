"""Queue a finished job's webhook: at most once per job, whoever asks (the worker that finished it,
the API that canceled it), or again on an explicit redelivery."""
from __future__ import annotations

import logging

from shared import tasks
from shared.jobs import TERMINAL, WebhookState, now
from shared.store.jobs import JobStore

log = logging.getLogger(__name__)


class WebhookPublisher:
    def __init__(self, celery, jobs: JobStore, first_delay_s: float = 0):
        self.celery = celery
        self.jobs = jobs
        self.first_delay_s = first_delay_s

    def notify(self, job_id: str) -> bool:
        """Queue the webhook of a job that just ended. Never raises: the job's end stands, and a
        webhook that could not be queued can be redelivered."""
        try:
            return self._publish(job_id, redeliver=False)
        except Exception:  # noqa: BLE001 - see above
            log.exception("job %s: could not queue its webhook", job_id)
            return False

    def redeliver(self, job_id: str) -> bool:
        """Queue the webhook again, with the same webhook ID; raises if the broker is away."""
        return self._publish(job_id, redeliver=True)

    def _publish(self, job_id: str, redeliver: bool) -> bool:
        record = self.jobs.get(job_id)
        if record is None or not record.callback_url or record.status not in TERMINAL:
            return False
        claimed = self.jobs.claim_webhook(job_id, redeliver)
        if claimed is None:
            return False
        webhook_id, generation, first = claimed
        previous = record.webhook or WebhookState()
        self.jobs.save_webhook(job_id, WebhookState(status="pending", attempts=previous.attempts,
                                                    last_status_code=previous.last_status_code,
                                                    next_attempt_at=now()))
        try:
            tasks.send_webhook(self.celery, job_id, webhook_id, generation,
                               countdown=0 if redeliver else self.first_delay_s)
        except Exception:
            if first:
                self.jobs.release_webhook(job_id)
            raise
        log.info("job %s: webhook %s queued (job.%s, generation %d)", job_id, webhook_id, record.status, generation)
        return True
