"""The retention sweep: files whose job record has expired go, and so do stale index entries;
so do the chunk files of jobs that ended a while ago (streams read them until then)."""
from __future__ import annotations

import logging

from shared.chunk_files import is_chunk_file
from shared.jobs import now
from shared.storage import Storage
from shared.store import Store

log = logging.getLogger(__name__)

LOCK = "sweep"
# How long a finished job's chunk pieces stay for a stream still reading them.
CHUNK_GRACE_S = 600


def sweep(store: Store, storage: Storage) -> int:
    removed = 0
    ended: dict[str, bool] = {}
    for job_id, path in storage.job_ids():
        if not store.jobs.exists(job_id):
            path.unlink(missing_ok=True)
            removed += 1
        elif is_chunk_file(path.name):
            if job_id not in ended:
                record = store.jobs.get(job_id)
                ended[job_id] = bool(record and record.finished_at
                                     and (now() - record.finished_at).total_seconds() > CHUNK_GRACE_S)
            if ended[job_id]:
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
