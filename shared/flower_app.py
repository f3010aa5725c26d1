"""The Celery app Flower runs (`celery -A shared.flower_app flower`): the workers' broker settings
from the one Settings object, so Flower reaches Redis as they do (a Sentinel URL needs its master's
name in the transport options, which no Celery variable carries), without importing worker code.

Settings are read when Celery first configures the app, not at import.
"""
from __future__ import annotations

from celery import Celery

app = Celery("voxq.flower")


@app.on_configure.connect
def _configure(sender: Celery, **_) -> None:
    from shared.broker import celery_config
    from shared.config import Settings, SettingsError
    from shared.store import refusals_are_outages

    # Like a worker, Flower outlives a Redis that refuses writes, or a failover, and reconnects.
    refusals_are_outages()
    try:
        settings = Settings.load()
    except SettingsError as exc:
        raise SystemExit(f"voxq flower: error: invalid settings:\n{exc}") from None
    sender.config_from_object(celery_config(settings, worker=True))
