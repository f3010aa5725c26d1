"""gunicorn settings for the API: JSON logs, and Prometheus multiprocess bookkeeping.

    PROMETHEUS_MULTIPROC_DIR=/tmp/voxq-metrics \
    gunicorn -c python:api.gunicorn_conf --bind 0.0.0.0:5000 --workers 2 'api.app:create_app()'

PROMETHEUS_MULTIPROC_DIR must name a folder private to this API instance: it is emptied here when
gunicorn starts, so a restart does not add the previous run's counts to this one's.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

# gevent: a client streaming a long job's audio (api/streams.py) or waiting on /v1/audio/speech
# holds a sleeping greenlet, not a process or a thread, so a few workers serve thousands of them.
# Its JSON-answering subclass (api/gunicorn_worker.py): what gunicorn rejects itself is no HTML page.
worker_class = "api.gunicorn_worker.GeventJsonWorker"
worker_connections = 1000


class _StreamAborts(logging.Filter):
    """A stream cut short because its job failed is how clients learn of it (api/streams.py),
    not a server error: gunicorn's "Error handling request" line for it is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return type(exc).__name__ != "StreamAborted"


# gunicorn's own lines (start, worker boots and exits) in the same JSON as the app's.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "shared.logs.JsonFormatter"}},
    "filters": {"stream_aborts": {"()": "api.gunicorn_conf._StreamAborts"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr",
                            "filters": ["stream_aborts"]}},
    "root": {"level": "INFO", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        # The app logs every request itself (api.access: route, status, duration, job ID).
        "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
    },
}


def _metrics_dir() -> Path | None:
    # Read here, not from Settings: the master runs these hooks before any app (and its Settings)
    # exists, and prometheus-client itself reads this variable in every worker.
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(folder) if folder else None


def on_starting(server) -> None:
    from shared.config import Settings, SettingsError

    try:
        Settings.load()
    except SettingsError as exc:
        # Before any worker boots: one line per bad variable, instead of a traceback per worker.
        raise SystemExit(f"voxq api: error: invalid settings:\n{exc}") from None
    folder = _metrics_dir()
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.glob("*.db"):
        path.unlink(missing_ok=True)


def post_worker_init(worker) -> None:
    # After the fork (sockets must not cross it), before the first request: see Services.warm.
    services = getattr(worker.wsgi, "extensions", {}).get("voxq")
    if services is not None:
        services.warm()


def child_exit(server, worker) -> None:
    if _metrics_dir() is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
