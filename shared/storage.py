"""Shared audio storage: paths derive from the job ID alone; writes land by atomic rename. A job's
chunk files are shared/chunk_files.py's."""
from __future__ import annotations

import errno
import os
import re
import shutil
import threading
import uuid
from pathlib import Path

from shared.options import EXTENSIONS

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
# What the storage probe writes: about one chunk file's page, so "it has room for a probe" means
# something, and small enough to cost nothing.
PROBE_BYTES = 64 * 1024
_WHY = {errno.ENOSPC: "is full", errno.EDQUOT: "is over its quota", errno.EROFS: "is read-only",
        errno.EACCES: "cannot be written (permission denied)", errno.EIO: "has an I/O error"}


def describe(exc: OSError, root: Path) -> str:
    """One line for people: which storage, and what is wrong with it."""
    why = _WHY.get(exc.errno, f"cannot be written ({exc.strerror or exc.__class__.__name__})")
    return f"the audio storage at {root} {why}"


class Storage:
    def __init__(self, data_dir: str | os.PathLike):
        self.root = Path(data_dir)

    def folder(self, job_id: str) -> Path:
        if not JOB_ID.match(job_id):
            # Never let anything but our own IDs near the filesystem.
            raise ValueError(f"not a job id: {job_id!r}")
        return self.root / "audio" / job_id[:2]

    def audio_path(self, job_id: str, fmt: str) -> Path:
        return self.folder(job_id) / f"{job_id}.{EXTENSIONS[fmt]}"

    def marks_path(self, job_id: str) -> Path:
        return self.folder(job_id) / f"{job_id}.marks.json"

    def temp_path(self, final: Path, tag: str = "") -> Path:
        # Same folder as the final file, so the rename is atomic (one filesystem); the process,
        # the thread (a threads-pool worker runs several chunks in one process) and a random tag,
        # so two attempts never share a name, even in one process after a pause.
        final.parent.mkdir(parents=True, exist_ok=True)
        return final.with_name(f".{final.name}.{tag}{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}.tmp")

    @staticmethod
    def publish(temp: Path, final: Path) -> None:
        os.replace(temp, final)

    def link_or_copy(self, source: Path, final: Path) -> None:
        """Give a job its own file for a cached result (a hard link where the filesystem allows)."""
        temp = self.temp_path(final)
        try:
            os.link(source, temp)
        except OSError:
            shutil.copyfile(source, temp)
        self.publish(temp, final)

    def usage(self) -> tuple[int, int]:
        """(free bytes, size in bytes) of the filesystem the audio goes to."""
        audio = self.root / "audio"
        usage = shutil.disk_usage(next(p for p in (audio, self.root, *self.root.parents) if p.is_dir()))
        return usage.free, usage.total

    def problem(self) -> str | None:
        """Why audio cannot be written now (full, read-only, gone), or None: a real write of a
        small probe, since a filesystem can refuse writes while it still reports free space."""
        audio = self.root / "audio"
        probe = audio / f".probe.{os.getpid()}-{threading.get_ident()}"
        try:
            audio.mkdir(parents=True, exist_ok=True)
            with open(probe, "wb") as out:
                out.write(b"\0" * PROBE_BYTES)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            return describe(exc, audio)
        finally:
            try:
                probe.unlink(missing_ok=True)
            except OSError:
                pass
        return None

    def failure(self, exc: BaseException) -> str | None:
        """Whether an error writing audio was the storage's: an OSError of a full, read-only or
        failing filesystem anywhere in its chain, or else (libsndfile says only "unknown error")
        a probe that fails now. One line for people, or None."""
        seen = exc
        while seen is not None:
            if isinstance(seen, OSError) and seen.errno in _WHY:
                return describe(seen, self.root / "audio")
            seen = seen.__cause__ or seen.__context__
        return self.problem()

    def delete(self, job_id: str) -> None:
        folder = self.folder(job_id)
        if folder.is_dir():
            for path in folder.glob(f"{job_id}.*"):
                path.unlink(missing_ok=True)

    def job_ids(self):
        """Every job ID that has a file, for the retention sweep."""
        audio = self.root / "audio"
        if not audio.is_dir():
            return
        for path in audio.glob("*/*"):
            stem = path.name.lstrip(".").split(".", 1)[0]
            if JOB_ID.match(stem):
                yield stem, path
