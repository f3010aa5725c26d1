"""What one worker process holds for its lifetime: settings, Redis, storage, and the engine."""
from __future__ import annotations

import logging

from shared.config import Settings
from shared.jobstore import JobStore, connect
from shared.storage import Storage

log = logging.getLogger(__name__)

_runner = None
_heartbeat = None
_store = None


def start(settings: Settings, load_engine: bool, queues: list[str]) -> None:
    global _runner, _heartbeat, _store
    from worker.heartbeat import Heartbeat, capabilities

    _store = JobStore(connect(settings.redis_url), settings.result_ttl_s)
    storage = Storage(settings.data_dir)
    caps = None
    if load_engine:
        from worker.engines import load_engine as load
        from worker.runner import Runner

        engine = load(settings)
        # Warm up before taking a task: the first call pays for jieba's dictionary and the
        # runtime's allocations, which would otherwise land on the first user's job.
        from worker.engines.base import Prosody

        engine.synthesize("你好。", Prosody())
        batcher = None
        if hasattr(engine, "synthesize_batch") and settings.batch_max > 1:
            from worker.batcher import Batcher

            batcher = Batcher(engine, settings.batch_max, settings.batch_wait_ms / 1000)
        _runner = Runner(settings, _store, storage, engine, batcher)
        caps = capabilities(engine, settings)
    _heartbeat = Heartbeat(settings, _store, storage, caps, queues)
    _heartbeat.start()


def runner():
    if _runner is None:
        raise RuntimeError("this worker process has no engine (it does not consume a synthesis queue)")
    return _runner


def store() -> JobStore:
    return _store


def stop() -> None:
    if _heartbeat is not None:
        _heartbeat.stop()
