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
    from shared.broker import configure_long_lived

    # Like a worker, Flower outlives a Redis that refuses writes, or a failover, and reconnects.
    configure_long_lived(sender, "flower")
