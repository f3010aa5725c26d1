"""Assembling a job's file from its landed chunks: in order, a block at a time, in bounded memory,
by whichever worker lands the last chunk; with loudness on, at one gain measured over the whole job."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.options import TRUE_PEAK_CEILING_DBTP
from shared.storage import Storage
from worker import loudness
from worker.assets import sha256_of
from worker.audio import transcode
from worker.marks import MarksWriter


@dataclass
class Assembled:
    frames: int
    speech_samples: int
    bytes: int
    sha256: str
    loudness_lufs: float | None = None  # what the file measures, when loudness is on
    true_peak_dbtp: float | None = None


def assemble(storage: Storage, job_id: str, chunks: int, fmt: str, rate: int, audio_path: Path,
             marks_path: Path | None, target: float | None = None) -> Assembled:
    """Write the job's audio (and marks, shifted by each chunk's start) from chunks 0..chunks-1."""
    return assemble_files([storage.chunk_path(job_id, i, "pcm") for i in range(chunks)],
                          [storage.chunk_path(job_id, i, "json") for i in range(chunks)],
                          fmt, rate, audio_path, marks_path, target)


def assemble_files(pcm_paths: list[Path], meta_paths: list[Path], fmt: str, rate: int, audio_path: Path,
                   marks_path: Path | None, target: float | None = None) -> Assembled:
    """The first pass reads the chunks' records (marks, lengths, loudness blocks); the second
    encodes their PCM, each chunk scaled from the gain it was written at to the job's."""
    marks = MarksWriter(marks_path)
    frames = speech = 0
    blocks: list[np.ndarray] = []
    chunk_gains: list[float] = []
    peak = -math.inf
    try:
        for path in meta_paths:
            meta = json.loads(path.read_text(encoding="utf-8"))
            marks.write_entries(meta["marks"], frames * 1000.0 / rate)
            frames += meta["frames"]
            speech += meta["speech_samples"]
            level = meta.get("loudness")
            if level is not None:
                blocks.append(np.asarray(level["blocks"], dtype=np.float64))
                if level["true_peak_db"] is not None:
                    peak = max(peak, level["true_peak_db"])
            chunk_gains.append(level["gain_db"] if level is not None else 0.0)
    finally:
        marks.close()
    gains = lufs = true_peak = None
    if target is not None:
        measured = loudness.integrated(np.concatenate(blocks) if blocks else np.zeros(0))
        job_gain = loudness.gain_db(target, measured, peak, TRUE_PEAK_CEILING_DBTP)
        # A one-chunk job was written at the job's gain already: its factor is exactly 1.
        gains = [loudness.factor(job_gain - gain) for gain in chunk_gains]
        if math.isfinite(measured):
            lufs = round(measured + job_gain, 2)
        if math.isfinite(peak):
            true_peak = round(peak + job_gain, 2)
    written = transcode(pcm_paths, audio_path, fmt, rate, gains)
    if written != frames:
        raise RuntimeError(f"{audio_path.name}: the chunks hold {written} frames, their records say {frames}")
    return Assembled(frames, speech, audio_path.stat().st_size, sha256_of(audio_path), lufs, true_peak)
