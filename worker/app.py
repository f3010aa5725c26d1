"""The Celery app of the workers: `celery -A worker.app worker ...`. The engine loads per process.

Settings are read when Celery first configures the app (as the worker starts), not at import.
"""
from __future__ import annotations

import logging

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_process_shutdown, worker_ready, worker_shutdown

from shared import logs, tasks
from shared.broker import configure_long_lived
from shared.config import Settings

app = Celery("voxq.worker", include=["worker.tasks"])

log = logging.getLogger(__name__)
_settings: Settings | None = None


@app.on_configure.connect
def _configure(sender: Celery, **_) -> None:
    global _settings
    _settings = configure_long_lived(sender, "worker")


def settings() -> Settings:
    if _settings is None:
        app.conf.broker_url  # noqa: B018 - reading the config makes Celery run _configure once
    return _settings


def _queues() -> list[str]:
    return sorted(app.amqp.queues.consume_from or app.amqp.queues)


def _consumes_synthesis() -> bool:
    return bool(set(_queues()) & set(tasks.SYNTHESIS_QUEUES))


@worker_process_init.connect
def _init_child(**_):
    # Prefork: each child loads its own engine after the fork, so no model state is shared
    # across processes and no child inherits a half-initialised runtime.
    from worker import context

    context.start(settings(), app, load_engine=_consumes_synthesis(), queues=_queues())


@worker_init.connect
def _init_main(sender=None, **_):
    from worker import metrics_server

    current = settings()
    logs.configure(current.log_level)
    metrics_server.start(current)  # in the main process, before the pool forks
    if _consumes_synthesis():
        from worker.engines import EngineError, preflight

        try:
            preflight(current)
        except EngineError as exc:
            # Exit before forking children that would each die the same way, over and over.
            raise SystemExit(f"voxq worker: error: {exc}") from None
    pool = getattr(sender, "pool_cls", None)
    pool_name = getattr(pool, "__module__", str(pool)) if pool else ""
    if "solo" in pool_name or "thread" in pool_name:
        # solo and threads pools never fork: load in the main process. A GPU worker runs the
        # threads pool (its batcher groups segments across jobs), so CUDA starts here and no
        # fork ever follows it.
        from worker import context

        context.start(current, app, load_engine=_consumes_synthesis(), queues=_queues())


_renewer = None


@worker_ready.connect
def _renew_leases(**_):
    # In the consumer process (the prefork main, or the only process of a threads pool): the one
    # that takes messages from Redis and acknowledges them.
    global _renewer
    from shared.store import Store
    from worker.leases import Renewer

    current = settings()
    _renewer = Renewer(Store.open(current.redis, current.jobs.result_ttl_s), current.jobs.visibility_timeout_s)
    _renewer.start()


@worker_process_shutdown.connect
@worker_shutdown.connect
def _stop(**_):
    from worker import context

    if _renewer is not None:
        _renewer.stop()
    context.stop()
