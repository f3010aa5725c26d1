"""How the benchmarks summarise what they measured."""
from __future__ import annotations


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile: a value that was measured, never one between two."""
    import numpy

    return float(numpy.percentile(values, q, method="nearest"))
