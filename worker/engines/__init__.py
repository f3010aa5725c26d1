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


def engine_class(settings: Settings):
    name = settings.engine.name
    found = importlib.metadata.entry_points(group=GROUP, name=name)
    if not found:
        raise EngineError(f"unknown engine {name!r}; available: {', '.join(available())}")
    try:
        return next(iter(found)).load()
    except ImportError as exc:
        raise EngineError(f"engine {name!r} cannot be imported: {exc}") from exc


def preflight(settings: Settings) -> None:
    """Cheap checks before a worker forks: fail at start-up, once, with a message that says why."""
    try:
        engine_class(settings).check(settings)
    except EngineError:
        raise
    except (RuntimeError, ValueError) as exc:
        raise EngineError(str(exc)) from exc


def load_engine(settings: Settings) -> Engine:
    """Import the engine named by settings.engine.name and load it (the one place that does I/O)."""
    return engine_class(settings).load(settings)
