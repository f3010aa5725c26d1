"""`voxq bench engine|frontend|pitch|cluster|latency|live|ha|quality`: speed, memory and quality figures, printed; never
asserted in tests, but for the quality benchmark's syllable error rate (tests/test_quality.py)."""
from __future__ import annotations


def add_parser(sub) -> None:
    from voxq.bench import cluster, engine, frontend, ha, latency, live, pitch, quality  # all light: no model stack at import

    bench = sub.add_parser("bench", help="print speed, memory and quality figures")
    which = bench.add_subparsers(dest="bench", required=True)
    for command in (engine, frontend, pitch, cluster, latency, live, ha, quality):
        command.add_parser(which)
