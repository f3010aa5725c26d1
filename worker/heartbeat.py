"""Worker presence in Redis: a heartbeat for /readyz and the engine's capabilities for /v1/voices,
from one background thread per worker process, which also runs the hourly retention sweep and, on
synthesis workers, the periodic dispatch of every tenant (worker/runner.py, `redispatch`)."""
from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Callable

from shared.config import Settings
from shared.options import (FORMATS, LOUDNESS_RANGE, OPUS_RATES, SAMPLE_RATES, TRUE_PEAK_CEILING_DBTP,
                            SynthesisOptions, loudness_target, rates_for)
from shared.storage import Storage
from shared.store import Store
from worker import retention

log = logging.getLogger(__name__)


def capabilities(engine, settings: Settings) -> dict:
    return {
        "engine": engine.name,
        "model_version": engine.model_version,
        "native_sample_rate": engine.sample_rate,
        "device": settings.engine.device,
        "voices": [
            {"name": v.name, "language": v.language, "gender": v.gender, "description": v.description}
            for v in engine.voices
        ],
        "emotions": list(engine.emotions),
        "formats": list(FORMATS),
        "sample_rates": list(SAMPLE_RATES),
        "opus_sample_rates": list(OPUS_RATES),
        # Every format's rates (G.711: 8000 only) and its loudness target when a request gives none.
        "format_sample_rates": {fmt: list(rates_for(fmt)) for fmt in FORMATS},
        "default_loudness_lufs": {fmt: loudness_target(SynthesisOptions(format=fmt)) for fmt in FORMATS},
        "loudness_range_lufs": list(LOUDNESS_RANGE),
        "true_peak_ceiling_dbtp": TRUE_PEAK_CEILING_DBTP,
        "limits": {"max_chars": settings.limits.max_chars, "speed": [0.5, 2.0], "pitch": [0.5, 2.0],
                   "volume": [0.0, 2.0]},
    }


class Heartbeat:
    def __init__(self, settings: Settings, store: Store, storage: Storage, caps: dict | None,
                 queues: list[str], sweep_every_s: float = 3600, redispatch: Callable[[], None] | None = None):
        self.settings = settings
        self.store = store
        self.storage = storage
        self.caps = caps
        self.queues = queues
        self.sweep_every_s = sweep_every_s
        self.redispatch = redispatch
        # One worker of the cluster at a time, a few times per chunk timeout: a chunk lost between
        # claim and publish goes out again within about 1.25 x chunk_timeout_s.
        self.redispatch_every_s = max(1, settings.jobs.chunk_timeout_s // 4)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()

    def beat(self) -> None:
        self.store.workers.beat(self.name, self.caps, self.queues, self.settings.jobs.heartbeat_ttl_s)

    def start(self) -> None:
        try:
            self.beat()
        except Exception:  # noqa: BLE001 - a process starting while Redis is away still starts; the loop beats
            log.warning("first heartbeat failed; the next beat retries", exc_info=True)
        thread = threading.Thread(target=self._loop, name="voxq-heartbeat", daemon=True)
        thread.start()

    def _loop(self) -> None:
        interval = max(1.0, self.settings.jobs.heartbeat_ttl_s / 3)
        while not self._stop.wait(interval):
            try:
                self.beat()
                retention.maybe_sweep(self.store, self.storage, self.name, self.sweep_every_s)
                if self.redispatch and self.store.locks.take("redispatch", self.name, self.redispatch_every_s):
                    self.redispatch()
            except Exception:  # Redis blips must not kill the thread; the next beat retries.
                log.warning("heartbeat failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        try:
            self.store.workers.leave(self.name)
        except Exception:  # noqa: BLE001 - stopping goes on without Redis; the heartbeat ages out
            log.debug("could not leave the worker registry", exc_info=True)
