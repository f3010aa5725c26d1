"""Shared audio storage: paths derive from the job ID alone; writes land by atomic rename."""
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

    def _folder(self, job_id: str) -> Path:
        if not JOB_ID.match(job_id):
            # Never let anything but our own IDs near the filesystem.
            raise ValueError(f"not a job id: {job_id!r}")
        return self.root / "audio" / job_id[:2]

    def audio_path(self, job_id: str, fmt: str) -> Path:
        return self._folder(job_id) / f"{job_id}.{EXTENSIONS[fmt]}"

    def marks_path(self, job_id: str) -> Path:
        return self._folder(job_id) / f"{job_id}.marks.json"

    # A chunk's files: "<job>.c00007.pcm" (16-bit PCM at the output rate: what the file is
    # assembled from, and what wav and pcm streams send), ".json" (its length and timing marks),
    # and for compressed formats the piece a stream sends (".mp3", ".ogg", ".opus").
    def chunk_path(self, job_id: str, index: int, kind: str) -> Path:
        return self._folder(job_id) / f"{job_id}.c{index:05d}.{kind}"

    def temp_path(self, final: Path) -> Path:
        # Same folder as the final file, so the rename is atomic (one filesystem); the thread
        # too, since a threads-pool worker runs several chunks in one process.
        final.parent.mkdir(parents=True, exist_ok=True)
        return final.with_name(f".{final.name}.{os.getpid()}-{threading.get_ident()}.tmp")

    def clear_temp(self, job_id: str, index: int | None = None) -> None:
        """Remove what an interrupted attempt left behind (a killed worker cannot): one chunk's,
        or with no index the whole job's (only once every chunk has landed)."""
        folder = self._folder(job_id)
        pattern = f".{job_id}.*.tmp" if index is None else f".{job_id}.c{index:05d}.*.tmp"
        if folder.is_dir():
            for path in folder.glob(pattern):
                path.unlink(missing_ok=True)

    def delete_chunks(self, job_id: str, kinds: tuple[str, ...] | None = None) -> None:
        """Remove the job's chunk files (of these kinds, or all)."""
        folder = self._folder(job_id)
        if folder.is_dir():
            for path in folder.glob(f"{job_id}.c[0-9]*.*"):
                if kinds is None or path.suffix.lstrip(".") in kinds:
                    path.unlink(missing_ok=True)

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
        folder = self._folder(job_id)
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
