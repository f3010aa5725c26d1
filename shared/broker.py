"""The Celery configuration both sides share, so the API can publish without importing the worker."""
from __future__ import annotations

from celery import Celery
from kombu import Queue

from shared import tasks
from shared.config import Settings


def celery_config(settings: Settings, worker: bool = False) -> dict:
    """The shared configuration; `worker=True` for the worker app, which outlives Redis outages
    where the API fails fast."""
    visibility = settings.jobs.visibility_timeout_s
    config = {
        "broker_url": settings.redis_url,
        # Job state lives in our own Redis records, so Celery keeps no results.
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": {
            # Sized to a chunk, not a job: a live worker renews the messages it holds
            # (worker/leases.py), so only a dead worker's messages age out, and return this soon.
            "visibility_timeout": visibility,
            "socket_connect_timeout": 1,
            "socket_timeout": 5,
            "queue_order_strategy": "priority",
            # How often a worker looks for messages whose worker died (unacked past the
            # visibility timeout). kombu's default sweeps every ~100 s; a cheap check every
            # quarter timeout bounds recovery at visibility_timeout_s * 1.25 (restore_bound_s).
            "unacked_restore_interval": restore_interval_s(settings),
            "unacked_restore_throttle": 1,
            # The lock kombu takes around that sweep expires after 5 minutes by default. A Redis
            # that freezes (SIGSTOP, a stalled disk) runs the SET NX a worker sent before giving
            # up, once it resumes: nobody holds it, and no message was restored for 5 minutes.
            # The sweep takes milliseconds, so a visibility timeout is a generous expiry.
            "unacked_mutex_expire": visibility,
            # With Sentinel: the master's name and the sentinels' password (kombu's Sentinel
            # transport asks them for the master on each connection, and again after a failover).
            **settings.redis.transport_options(),
        },
        "broker_connection_retry_on_startup": True,
        # The API must answer 503 quickly when Redis is down, not retry the publish for minutes.
        "broker_connection_timeout": 1,
        "broker_connection_max_retries": 1,
        "task_default_queue": tasks.BATCH,
        "task_queues": [Queue(name) for name in (*tasks.SYNTHESIS_QUEUES, tasks.WEBHOOKS)],
        "task_create_missing_queues": True,
        "worker_hijack_root_logger": False,
        # Workers send events so Flower can watch them. The API sends no "task-sent" event: it
        # would be a second publish on every submit, and Flower learns of a task when it arrives.
        "worker_send_task_events": True,
        "task_send_sent_event": False,
    }
    if worker:
        config.update({
            # A worker outlives a Redis outage: Celery's consumer reconnects for ever, backing
            # off (2 s, 4 s, ... up to 30 s between tries), and resumes consuming. Only the API
            # must give up at once.
            "broker_connection_retry": True,
            "broker_connection_max_retries": None,
            "broker_connection_timeout": 2,
        })
    return config


def restore_interval_s(settings: Settings) -> int:
    return max(1, min(10, settings.jobs.visibility_timeout_s // 4))


def restore_bound_s(settings: Settings) -> float:
    """How long a dead worker's messages (running, prefetched, waiting for their ETA) take to be
    back in the queue: their lease runs out, then the next restore sweep finds them."""
    return settings.jobs.visibility_timeout_s + restore_interval_s(settings)


def configure_long_lived(app: Celery, program: str) -> Settings:
    """Configure a process that outlives Redis (a worker, Flower) from the one Settings object, in
    Celery's on_configure: Redis refusing writes is made an outage to wait out before any
    connection, and bad settings stop it with one line per variable (no traceback, and no
    children forked to fail alike). Returns the settings."""
    from shared.config import SettingsError
    from shared.store import refusals_are_outages

    refusals_are_outages()
    try:
        settings = Settings.load()
    except SettingsError as exc:
        raise SystemExit(f"voxq {program}: error: invalid settings:\n{exc}") from None
    # Loaded by Celery right after the signal (reading app.conf there would recurse).
    app.config_from_object(celery_config(settings, worker=True))
    return settings


def make_celery(settings: Settings, name: str = "voxq") -> Celery:
    app = Celery(name)
    app.conf.update(celery_config(settings))
    return app
