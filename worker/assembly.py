"""Assembling a job's file from its landed chunks: in order, a block at a time, in bounded memory,
by whichever worker lands the last chunk."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from shared.storage import Storage
from worker.assets import sha256_of
from worker.audio import transcode
from worker.marks import MarksWriter


@dataclass
class Assembled:
    frames: int
    speech_samples: int
    bytes: int
    sha256: str


def assemble(storage: Storage, job_id: str, chunks: int, fmt: str, rate: int, audio_path: Path,
             marks_path: Path | None) -> Assembled:
    """Write the job's audio (and marks, shifted by each chunk's start) from chunks 0..chunks-1."""
    marks = MarksWriter(marks_path)
    frames = speech = 0
    try:
        for index in range(chunks):
            meta = json.loads(storage.chunk_path(job_id, index, "json").read_text(encoding="utf-8"))
            marks.write_entries(meta["marks"], frames * 1000.0 / rate)
            frames += meta["frames"]
            speech += meta["speech_samples"]
    finally:
        marks.close()
    written = transcode((storage.chunk_path(job_id, i, "pcm") for i in range(chunks)), audio_path, fmt, rate)
    if written != frames:
        raise RuntimeError(f"job {job_id}: the chunks hold {written} frames, their records say {frames}")
    return Assembled(frames, speech, audio_path.stat().st_size, sha256_of(audio_path))
