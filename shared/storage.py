"""Shared audio storage: paths derive from the job ID alone; writes land by atomic rename. A job's
chunk files are shared/chunk_files.py's."""
from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path

from shared.options import EXTENSIONS

JOB_ID = re.compile(r"^[0-9a-f]{32}$")


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

    def temp_path(self, final: Path) -> Path:
        # Same folder as the final file, so the rename is atomic (one filesystem); the thread
        # too, since a threads-pool worker runs several chunks in one process.
        final.parent.mkdir(parents=True, exist_ok=True)
        return final.with_name(f".{final.name}.{os.getpid()}-{threading.get_ident()}.tmp")

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
