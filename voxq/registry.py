"""The running `voxq up`s, recorded in the user's state directory (XDG_STATE_HOME/voxq), so that
`voxq status` finds a cluster from any folder, not only from the one it was started in.

A record only points at a data directory; how to reach the cluster (its Redis URL, with the
private Redis's password) stays in that directory's own state file (voxq/datadir.py). A record
whose `voxq up` is gone (it was killed: its data directory's lock is free) is stale.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from voxq import datadir

CLUSTERS = "clusters"


@dataclass(frozen=True)
class Running:
    """One recorded `voxq up`: its data directory and what it recorded there (None when stale)."""

    data_dir: Path
    pid: int | None
    state: dict | None


def _path(state_dir: Path, data_dir: Path) -> Path:
    # One record per data directory: a data directory serves one `voxq up` at a time.
    name = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    return state_dir / CLUSTERS / f"{name}.json"


def record(state_dir: Path, data_dir: Path, pid: int) -> None:
    folder = state_dir / CLUSTERS
    # The XDG spec asks for a state directory only its user can read.
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = _path(state_dir, data_dir)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"data_dir": str(data_dir), "pid": pid}, fh)


def forget(state_dir: Path, data_dir: Path) -> None:
    with contextlib.suppress(OSError):
        _path(state_dir, data_dir).unlink()


def running(state_dir: Path) -> tuple[list[Running], list[Running]]:
    """(live, stale) among the records; the stale ones are removed, so each is reported once."""
    live, stale = [], []
    for path in sorted((state_dir / CLUSTERS).glob("*.json")):
        try:
            facts = json.loads(path.read_text(encoding="utf-8"))
            data_dir = Path(facts["data_dir"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # half-written or foreign: not ours to judge
        state = datadir.read_state(data_dir) if datadir.held(data_dir) else None
        found = Running(data_dir, facts.get("pid"), state)
        if state is None:
            stale.append(found)
            with contextlib.suppress(OSError):
                path.unlink()
        else:
            live.append(found)
    return live, stale
