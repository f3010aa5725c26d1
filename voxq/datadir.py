"""What `voxq up` keeps in its data directory: the lock that makes it one cluster's, and the state
file that tells `voxq status` (and people) how to reach it."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import IO

from voxq.errors import CliError

STATE_FILE = "up.json"
LOCK_FILE = "voxq.lock"


def check_writable(data_dir: Path) -> None:
    """One clear line, before anything starts, when the data directory cannot hold the cluster's
    audio, logs and Redis files (read-only, full, not ours)."""
    probe = data_dir / f".voxq-probe-{os.getpid()}"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"\0" * 4096)
    except OSError as exc:
        raise CliError(f"the data directory {data_dir} cannot be written ({exc.strerror or exc}); "
                       "give a writable one with --data-dir or VOXQ_DATA_DIR") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)


def lock(data_dir: Path) -> IO:
    """Hold the data directory for as long as we run: two clusters must not share one by accident.
    The kernel releases the lock when we exit, however we exit."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise CliError(f"another `voxq up` (pid {holder}) is using {data_dir}; stop it first, "
                       "or give this one its own --data-dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def held(data_dir: Path) -> bool:
    """Whether a live `voxq up` holds this data directory's lock (its flock dies with it)."""
    try:
        with open(data_dir / LOCK_FILE, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False
    except OSError:
        return False


def write_state(data_dir: Path, state: dict) -> None:
    path = data_dir / STATE_FILE
    # The Redis URL inside carries the private Redis's password: readable by its owner only.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(state, fh, indent=2)


def read_state(data_dir: Path) -> dict | None:
    try:
        return json.loads((data_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def remove_state(data_dir: Path) -> None:
    with contextlib.suppress(OSError):
        (data_dir / STATE_FILE).unlink()
