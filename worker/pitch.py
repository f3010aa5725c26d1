"""Pitch control: shift the F0 level inside the acoustic model where it stays clean, WORLD beyond."""
from __future__ import annotations

import math

import numpy as np

# Measured on the Baker FastSpeech2 graph (see worker/engines/tflite_graph.py): each unit of
# offset on the normalised f0 moves the median F0 by about 13% in log terms, and the voice
# stays natural between -1.5 and +1.0; past that the model produces creak or falls apart.
LOG_RATIO_PER_OFFSET = 0.13
MIN_OFFSET, MAX_OFFSET = -1.5, 1.0


def split(ratio: float) -> tuple[float, float]:
    """Split a pitch ratio into (model f0 offset, residual ratio for WORLD)."""
    if ratio <= 0:
        raise ValueError("pitch ratio must be positive")
    wanted = math.log(ratio) / LOG_RATIO_PER_OFFSET
    offset = min(MAX_OFFSET, max(MIN_OFFSET, wanted))
    residual = math.exp((wanted - offset) * LOG_RATIO_PER_OFFSET)
    return offset, residual


def shift(samples: np.ndarray, sample_rate: int, ratio: float) -> np.ndarray:
    """Scale F0 by `ratio` with WORLD analysis and resynthesis, keeping the spectral envelope."""
    if abs(ratio - 1.0) < 1e-3 or len(samples) < sample_rate // 20:
        return samples
    import warnings

    with warnings.catch_warnings():
        # pyworld 0.3.5 imports the deprecated pkg_resources; the warning is noise for users.
        warnings.simplefilter("ignore", UserWarning)
        import pyworld  # imported here: only needed for pitch outside the model's clean range

    x = samples.astype(np.float64)
    f0, times = pyworld.dio(x, sample_rate)
    f0 = pyworld.stonemask(x, f0, times, sample_rate)
    envelope = pyworld.cheaptrick(x, f0, times, sample_rate)
    aperiodicity = pyworld.d4c(x, f0, times, sample_rate)
    y = pyworld.synthesize(f0 * ratio, envelope, aperiodicity, sample_rate)
    y = y[: len(samples)]
    if len(y) < len(samples):
        y = np.pad(y, (0, len(samples) - len(y)))
    return y.astype(np.float32)
