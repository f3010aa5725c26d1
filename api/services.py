"""The API's connections (Redis job store, Celery publisher), made lazily once per process."""
from __future__ import annotations

from flask import Flask, current_app

from shared.broker import make_celery
from shared.jobstore import JobStore, connect
from shared.storage import Storage


class Services:
    def __init__(self, settings):
        self.settings = settings
        self._store = None
        self._celery = None
        self.storage = Storage(settings.data_dir)

    @property
    def store(self) -> JobStore:
        if self._store is None:
            self._store = JobStore(connect(self.settings.redis_url), self.settings.result_ttl_s)
        return self._store

    @property
    def celery(self):
        if self._celery is None:
            self._celery = make_celery(self.settings, "voxq.api")
        return self._celery


def init_app(app: Flask) -> None:
    # Nothing connects here: gunicorn forks after create_app, and sockets must not cross a fork.
    app.extensions["voxq"] = Services(app.config["SETTINGS"])


def get() -> Services:
    return current_app.extensions["voxq"]
