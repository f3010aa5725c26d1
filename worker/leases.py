"""Leases on the messages a worker holds: running, prefetched, and waiting for their ETA (webhook
retries), renewed while the worker lives, so the visibility timeout can be sized to a chunk.

kombu's Redis transport gives a taken message back to the queue once it has been unacknowledged
for the visibility timeout. With a timeout of an hour, a dead worker's work sat for that hour;
with a timeout of seconds, a live worker's long chunk or a webhook retry due in five minutes
would be handed to a second worker. So the consumer process (the one that takes and acknowledges
messages) renews, every quarter timeout, the delivery time of every message it holds. A worker
that dies stops renewing, and its messages return within visibility_timeout_s plus the restore
interval (shared/broker.py): the recovery bound the README states.
"""
from __future__ import annotations

import logging
import threading
import time

from shared.store import Store

log = logging.getLogger(__name__)


def held() -> list[str]:
    """Delivery tags of the messages Celery holds in this process and has not settled: reserved
    (prefetched), active (running) and scheduled (waiting for an ETA). A request Celery gave up
    on (a task that failed while Redis was away, its ack lost) leaves these sets, so its lease
    runs out and its message returns, rather than being renewed for ever."""
    from celery.worker import state

    tags = set()
    for group in (state.reserved_requests, state.active_requests, state.scheduled_requests):
        for request in list(group):
            message = getattr(request, "message", None)
            tag = getattr(message, "delivery_tag", None)
            if tag and not message.acknowledged:
                tags.add(tag)
    return sorted(tags)


class Renewer:
    def __init__(self, store: Store, visibility_timeout_s: float):
        self.store = store
        self.interval = max(0.5, visibility_timeout_s / 4)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="voxq-leases", daemon=True)
        self._thread.start()

    def renew(self) -> int:
        return self.store.queues.renew(held(), time.time())

    def _loop(self) -> None:
        wait = self.interval
        while not self._stop.wait(wait):
            try:
                self.renew()
                wait = self.interval
            except Exception:  # noqa: BLE001 - Redis is down: renew as soon as it is back
                log.debug("could not renew message leases", exc_info=True)
                # Sooner than kombu's restore can run after a reconnect, so a worker that
                # outlived a Redis outage keeps its messages.
                wait = 0.5

    def stop(self) -> None:
        self._stop.set()
