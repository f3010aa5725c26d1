"""`voxq bench engine|frontend|pitch|cluster|latency|ha`: speed and memory figures, printed; never asserted in tests."""
from __future__ import annotations


def add_parser(sub) -> None:
    from voxq.bench import cluster, engine, frontend, ha, latency, pitch  # all light: no model stack at import

    bench = sub.add_parser("bench", help="print speed and memory figures")
    which = bench.add_subparsers(dest="bench", required=True)
    for command in (engine, frontend, pitch, cluster, latency, ha):
        command.add_parser(which)
