"""The API's connections and policies (the store, the Celery publisher, keys, the callback-URL
policy), made lazily once per process from the app's one Settings object."""
from __future__ import annotations

from flask import Flask, current_app

from shared.broker import make_celery
from shared.callback_policy import Policy
from shared.config import Settings
from shared.keys import KeySource
from shared.storage import Storage
from shared.store import Store
from shared.webhook_publisher import WebhookPublisher


class Services:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.storage = Storage(settings.data_dir)
        # Reading the key files here makes a malformed file stop the start-up, not a later request.
        self.keys = KeySource(settings.keys)
        self.callback_policy = Policy.from_settings(settings.webhooks)
        self._store = None
        self._celery = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.settings.redis, self.settings.jobs.result_ttl_s)
        return self._store

    @property
    def celery(self):
        if self._celery is None:
            self._celery = make_celery(self.settings, "voxq.api")
        return self._celery

    def warm(self) -> None:
        """Connect the store and the publisher now, in a freshly forked API process, so that its
        first submit does not pay for them (measured: about 30 ms of the first job's first
        audio): the connections, Celery's (disabled) result backend, which it loads on the first
        send, and the queues' declarations. Redis being away is no reason not to serve: the first
        request connects then."""
        try:
            self.store.ping()
            self.celery.backend  # noqa: B018 - loaded through entry points on first use
            with self.celery.producer_pool.acquire(block=True, timeout=2) as producer:
                producer.connection.ensure_connection(max_retries=1)
                for queue in self.celery.amqp.queues.values():
                    producer.maybe_declare(queue)
        except Exception:  # noqa: BLE001 - an outage at start-up is the first request's to report
            return

    @property
    def webhooks(self) -> WebhookPublisher:
        return WebhookPublisher(self.celery, self.store.jobs, self.settings.webhooks.retry_schedule[0])


def init_app(app: Flask) -> None:
    # Nothing connects here: gunicorn forks after create_app, and sockets must not cross a fork.
    app.extensions["voxq"] = Services(app.config["SETTINGS"])


def get() -> Services:
    return current_app.extensions["voxq"]
