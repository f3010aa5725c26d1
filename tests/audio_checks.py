"""Measurements on real audio for the tests: F0, loudness, silence."""
from __future__ import annotations

import numpy as np
import pyworld


def f0_contour(samples: np.ndarray, rate: int) -> np.ndarray:
    f0, _ = pyworld.dio(samples.astype(np.float64), rate, frame_period=10.0)
    return f0[f0 > 0]


def mean_f0(samples: np.ndarray, rate: int) -> float:
    return float(np.mean(f0_contour(samples, rate)))


def median_f0(samples: np.ndarray, rate: int) -> float:
    return float(np.median(f0_contour(samples, rate)))


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples.astype(np.float64)))))


def voiced_fraction(samples: np.ndarray, rate: int) -> float:
    f0, _ = pyworld.dio(samples.astype(np.float64), rate, frame_period=10.0)
    return float(np.mean(f0 > 0))
