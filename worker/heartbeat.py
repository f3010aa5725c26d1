"""Worker presence in Redis: a heartbeat for /readyz, the engine's capabilities for /v1/voices,
and the hourly retention sweep, all from one background thread per worker process."""
from __future__ import annotations

import logging
import os
import socket
import threading

from shared import registry
from shared.config import Settings
from shared.jobstore import JobStore
from shared.storage import Storage

log = logging.getLogger(__name__)


def capabilities(engine, settings: Settings) -> dict:
    from shared.options import FORMATS, OPUS_RATES, SAMPLE_RATES

    return {
        "engine": engine.name,
        "model_version": engine.model_version,
        "native_sample_rate": engine.sample_rate,
        "device": settings.device,
        "voices": [
            {"name": v.name, "language": v.language, "gender": v.gender, "description": v.description}
            for v in engine.voices
        ],
        "emotions": list(getattr(engine, "emotions", ())),
        "formats": list(FORMATS),
        "sample_rates": list(SAMPLE_RATES),
        "opus_sample_rates": list(OPUS_RATES),
        "limits": {"max_chars": settings.max_chars, "speed": [0.5, 2.0], "pitch": [0.5, 2.0], "volume": [0.0, 2.0]},
    }


def sweep(store: JobStore, storage: Storage) -> int:
    """Remove files whose job record has expired, and stale index entries."""
    removed = 0
    for job_id, path in storage.job_ids():
        if not store.redis.exists(store.job_key(job_id)):
            path.unlink(missing_ok=True)
            removed += 1
    store.prune_index()
    if removed:
        log.info("retention sweep removed %d file(s)", removed)
    return removed


class Heartbeat:
    def __init__(self, settings: Settings, store: JobStore, storage: Storage, caps: dict | None,
                 queues: list[str], sweep_every_s: float = 3600):
        self.settings = settings
        self.store = store
        self.storage = storage
        self.caps = caps
        self.queues = queues
        self.sweep_every_s = sweep_every_s
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()

    def beat(self) -> None:
        registry.beat(self.store.redis, self.name, self.caps, self.queues, self.settings.heartbeat_ttl_s)

    def maybe_sweep(self) -> None:
        # One sweeper in the whole cluster per period, whoever takes the lock first.
        if self.store.redis.set("voxq:sweep-lock", self.name, nx=True, ex=int(self.sweep_every_s)):
            sweep(self.store, self.storage)

    def start(self) -> None:
        self.beat()
        thread = threading.Thread(target=self._loop, name="voxq-heartbeat", daemon=True)
        thread.start()

    def _loop(self) -> None:
        interval = max(1.0, self.settings.heartbeat_ttl_s / 3)
        while not self._stop.wait(interval):
            try:
                self.beat()
                self.maybe_sweep()
            except Exception:  # Redis blips must not kill the thread; the next beat retries.
                log.warning("heartbeat failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
