"""The settings a command runs with: shared.config's one Settings object, a bad variable as a CliError."""
from __future__ import annotations

from typing import Any

from voxq.errors import CliError


def load(**overrides: Any):
    """`Settings.load(**overrides)`; every bad variable named in one CliError."""
    from shared.config import Settings, SettingsError

    try:
        return Settings.load(**overrides)
    except SettingsError as exc:
        raise CliError(f"invalid settings: {exc}") from None
