"""Assembling a job's file from its landed chunks: in order, a block at a time, in bounded memory,
by whichever worker lands the last chunk; with loudness on, at one gain measured over the whole job."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from shared.chunk_files import META, PCM, ChunkFiles
from shared.jobs import AudioResult
from shared.options import TRUE_PEAK_CEILING_DBTP
from shared.plan import NOTHING_TO_SAY
from worker import loudness
from worker.assets import sha256_of
from worker.audio import transcode
from worker.marks import MarksWriter
from worker.synthesizer import SynthesisError


def assemble(files: ChunkFiles, total: int, rate: int, audio_path: Path, marks_path: Path | None,
             target: float | None = None) -> AudioResult:
    """Write the job's audio (and marks, shifted by each chunk's start) from chunks 0..total-1,
    into `audio_path` and `marks_path` as they are given (the caller publishes them). Raises
    SynthesisError when the chunks hold no speech at all.

    The first pass reads the chunks' records (marks, lengths, loudness blocks); the second encodes
    their PCM, each chunk scaled from the gain it was written at to the job's."""
    marks = MarksWriter(marks_path)
    frames = speech = 0
    blocks: list[np.ndarray] = []
    chunk_gains: list[float] = []
    peak = -math.inf
    try:
        for index in range(total):
            meta = json.loads(files.path(index, META).read_text(encoding="utf-8"))
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
    if speech == 0:
        raise SynthesisError.of(NOTHING_TO_SAY)
    written = transcode([files.path(index, PCM) for index in range(total)], audio_path, files.format, rate, gains)
    if written != frames:
        raise RuntimeError(f"{audio_path.name}: the chunks hold {written} frames, their records say {frames}")
    return AudioResult(format=files.format, sample_rate=rate, duration_s=round(frames / rate, 3),
                       bytes=audio_path.stat().st_size, sha256=sha256_of(audio_path), marks=marks_path is not None,
                       loudness_lufs=lufs, true_peak_dbtp=true_peak)
