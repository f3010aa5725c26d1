"""What one worker process holds for its lifetime: settings, the store, storage, the engine's
runner and the webhook delivery. Built by worker/app.py's init signals, never at import."""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from shared.config import Settings
from shared.storage import Storage
from shared.store import Store

log = logging.getLogger(__name__)


@dataclass
class Context:
    settings: Settings
    store: Store
    storage: Storage
    runner: object | None = None  # worker.runner.Runner, when this process synthesizes
    _delivery: object | None = None
    heartbeat: object | None = None

    @property
    def delivery(self):
        """The webhook delivery (worker.webhook_delivery.Delivery), made on first use: only a
        webhooks worker needs the signing secrets, so only it reads their files."""
        if self._delivery is None:
            from shared.keys import KeySource
            from worker.webhook_delivery import Delivery

            self._delivery = Delivery(self.settings.webhooks, self.store, KeySource(self.settings.keys))
        return self._delivery


_current: Context | None = None


def start(settings: Settings, celery, load_engine: bool, queues: list[str]) -> Context:
    global _current
    from shared import tasks
    from shared.webhook_publisher import WebhookPublisher
    from worker.heartbeat import Heartbeat, capabilities

    store = Store.open(settings.redis, settings.jobs.result_ttl_s)
    storage = Storage(settings.data_dir)
    ctx = Context(settings, store, storage)
    caps = None
    if load_engine:
        from worker.engines import load_engine as load
        from worker.runner import Runner

        engine = load(settings)
        batcher = None
        if engine.supports_batch and settings.engine.batch_max > 1:
            from worker.batcher import Batcher

            batcher = Batcher(engine, settings.engine.batch_max, settings.engine.batch_wait_ms / 1000)
        publisher = WebhookPublisher(celery, store.jobs, settings.webhooks.retry_schedule[0])

        ctx.runner = Runner(settings, store, storage, engine, notify=publisher.notify,
                            publish=functools.partial(tasks.send_chunk, celery), batcher=batcher,
                            publish_job=lambda record: tasks.send_first_task(celery, store, settings, record.id,
                                                                             record.priority, record.text_chars))
        # Before the heartbeat says this process serves: its first job is as quick as its tenth.
        ctx.runner.pipeline.warm_up()
        caps = capabilities(engine, settings)
    ctx.heartbeat = Heartbeat(settings, store, storage, caps, queues,
                              redispatch=ctx.runner.redispatch if ctx.runner else None)
    ctx.heartbeat.start()
    _current = ctx
    return ctx


def current() -> Context:
    if _current is None:
        raise RuntimeError("this worker process has not started (worker_process_init did not run)")
    return _current


def runner():
    runner = current().runner
    if runner is None:
        raise RuntimeError("this worker process has no engine (it does not consume a synthesis queue)")
    return runner


def stop() -> None:
    if _current is not None and _current.heartbeat is not None:
        _current.heartbeat.stop()
