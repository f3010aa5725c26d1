"""Loudness (ITU-R BS.1770-4, as EBU R128 uses it) measured over a whole job, chunk by chunk.

Each chunk's worker measures its own chunk with pyloudnorm: the loudness of every 400 ms gating
block (75 % overlap, K-weighted), and the true peak (the samples oversampled four times by soxr,
as BS.1770's Annex 2 does). The blocks go into the chunk's record. The assembler then gates the
blocks of all the chunks together, exactly as BS.1770 gates one signal's blocks, so the job's
loudness is measured over the whole job, not per segment or per chunk, and one gain is applied to
all of it: speech within the job keeps its own dynamics. Memory: ten numbers per second of audio
(about 1 MB for a 100,000-character job), never the audio itself.

A stream cannot wait for the whole job: each chunk is written at its own measured gain (an
estimate of the job's, from that chunk alone), and the assembler applies the difference to each
chunk when it writes the file.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pyloudnorm
import scipy.signal  # noqa: F401 - pyloudnorm's filters load it on first use: load it with the worker, not in a job
import soxr

BLOCK_S = 0.4  # BS.1770's gating block
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = 10.0
OVERSAMPLE = 4  # for the true peak


@dataclass
class Measure:
    blocks: list[float]  # each gating block's loudness, LUFS (silent blocks left out: below any gate)
    true_peak_db: float  # dBTP; -inf for silence


def measure(samples: np.ndarray, rate: int) -> Measure:
    """The gating blocks and true peak of a chunk (float samples, full scale 1.0)."""
    if not len(samples):
        return Measure([], -math.inf)
    samples = samples.astype(np.float32, copy=False)  # pyloudnorm copies it: float32 keeps that small
    # A chunk shorter than one block (a last word) is measured as one block of its own length.
    meter = pyloudnorm.Meter(rate, block_size=min(BLOCK_S, len(samples) / rate))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # silence: log10(0) in pyloudnorm's blocks
        meter.integrated_loudness(samples)
    blocks = [round(float(b), 3) for b in meter.blockwise_loudness if math.isfinite(b)]
    return Measure(blocks, true_peak_db(samples, rate))


def true_peak_db(samples: np.ndarray, rate: int) -> float:
    """The true peak (dBTP): the samples oversampled four times, a second at a time, so the
    oversampled copy is never held whole."""
    upsampler = soxr.ResampleStream(rate, rate * OVERSAMPLE, 1, dtype="float32", quality="HQ")
    peak = float(np.abs(samples).max(initial=0.0))
    for start in range(0, len(samples), rate):
        piece = samples[start:start + rate]
        peak = max(peak, float(np.abs(upsampler.resample_chunk(piece, last=start + rate >= len(samples)))
                               .max(initial=0.0)))
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def _power_mean(blocks: np.ndarray) -> float:
    # Block loudness is -0.691 + 10 log10(mean square); averaging the mean squares (BS.1770 eq. 5
    # and 7) is this power mean of the loudness values, the offset cancelling out.
    return float(10 * np.log10(np.mean(np.power(10.0, blocks / 10.0))))


def integrated(blocks: np.ndarray) -> float:
    """Gated integrated loudness (LUFS) from block loudness values: BS.1770-4's two gates."""
    blocks = np.asarray(blocks, dtype=np.float64)
    above = blocks[blocks >= ABSOLUTE_GATE_LUFS]
    if not len(above):
        return -math.inf
    relative = _power_mean(above) - RELATIVE_GATE_LU
    gated = blocks[(blocks > relative) & (blocks > ABSOLUTE_GATE_LUFS)]
    return _power_mean(gated) if len(gated) else -math.inf


def gain_db(target: float, loudness: float, true_peak_db: float, ceiling_db: float) -> float:
    """The gain that brings `loudness` to `target`, cut back so the true peak stays under the ceiling.
    Silence gets none."""
    if not math.isfinite(loudness):
        return 0.0
    gain = target - loudness
    if math.isfinite(true_peak_db):
        gain = min(gain, ceiling_db - true_peak_db)
    return gain


def factor(db: float) -> float:
    return 10.0 ** (db / 20.0)
