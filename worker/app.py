"""The Celery app of the workers: `celery -A worker.app worker ...`. The engine loads per process."""
from __future__ import annotations

import logging

from celery.signals import worker_init, worker_process_init, worker_process_shutdown, worker_shutdown

from shared import logs, tasks
from shared.broker import make_celery
from shared.config import Settings
from worker import metrics_server

settings = Settings.from_env()
app = make_celery(settings, "voxq.worker")
app.conf.include = ["worker.tasks", "worker.webhooks"]

log = logging.getLogger(__name__)


def _consumes_synthesis() -> bool:
    queues = set(app.amqp.queues.consume_from or app.amqp.queues)
    return bool(queues & set(tasks.SYNTHESIS_QUEUES))


@worker_process_init.connect
def _init_child(**_):
    # Prefork: each child loads its own engine after the fork, so no model state is shared
    # across processes and no child inherits a half-initialised runtime.
    from worker import context

    context.start(settings, load_engine=_consumes_synthesis(), queues=_queues())


@worker_init.connect
def _init_main(sender=None, **_):
    logs.configure(settings.log_level)
    metrics_server.start(settings)  # in the main process, before the pool forks
    if _consumes_synthesis():
        from worker.engines import EngineError, preflight

        try:
            preflight(settings)
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

        context.start(settings, load_engine=_consumes_synthesis(), queues=_queues())


def _queues() -> list[str]:
    return sorted(app.amqp.queues.consume_from or app.amqp.queues)


@worker_process_shutdown.connect
@worker_shutdown.connect
def _stop(**_):
    from worker import context

    context.stop()
