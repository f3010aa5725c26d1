"""The retention sweep: files whose job record has expired go, and so do stale index entries."""
from __future__ import annotations

import logging

from shared.storage import Storage
from shared.store import Store

log = logging.getLogger(__name__)

LOCK = "sweep"


def sweep(store: Store, storage: Storage) -> int:
    removed = 0
    for job_id, path in storage.job_ids():
        if not store.jobs.exists(job_id):
            path.unlink(missing_ok=True)
            removed += 1
    store.jobs.prune_index()
    if removed:
        log.info("retention sweep removed %d file(s)", removed)
    return removed


def maybe_sweep(store: Store, storage: Storage, holder: str, every_s: float) -> bool:
    """Sweep if no one in the cluster has this period (the lock expires with the period)."""
    if store.locks.take(LOCK, holder, int(every_s)):
        sweep(store, storage)
        return True
    return False
