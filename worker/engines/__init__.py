"""The engine registry: engines are found by name through the `voxq.engines` entry points."""
from __future__ import annotations

import importlib.metadata

from shared.config import Settings

from .base import Engine

GROUP = "voxq.engines"


class EngineError(RuntimeError):
    """An engine cannot start; the message says what to install or set."""


def available() -> list[str]:
    return sorted(ep.name for ep in importlib.metadata.entry_points(group=GROUP))


def load_engine(settings: Settings) -> Engine:
    """Import the engine named by settings.engine and load it (the one place that does I/O)."""
    found = importlib.metadata.entry_points(group=GROUP, name=settings.engine)
    if not found:
        raise EngineError(
            f"unknown engine {settings.engine!r}; available: {', '.join(available())}"
        )
    engine_cls = next(iter(found)).load()
    return engine_cls.load(settings)
