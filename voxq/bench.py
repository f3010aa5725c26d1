"""`voxq bench engine|cluster`: speed and memory figures, printed; never asserted in tests."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from importlib import resources


def corpus() -> list[str]:
    text = resources.files("voxq").joinpath("corpus.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _engine_run(engine_name: str, threads: int) -> dict:
    """One engine in this (fresh) process: load time, per-sentence RTF, peak RSS."""
    import resource

    from shared.config import Settings
    from worker import synthesizer
    from worker.engines import load_engine
    from worker.engines.base import Prosody

    settings = Settings.from_env(engine=engine_name, engine_threads=threads)
    started = time.perf_counter()
    engine = load_engine(settings)
    sentences = corpus()
    # Load time is time to ready: a worker warms up (jieba, runtime allocations) before serving.
    engine.synthesize(sentences[0], Prosody())
    load_s = time.perf_counter() - started
    rtfs, audio_s, wall_s = [], 0.0, 0.0
    for sentence in sentences:
        started = time.perf_counter()
        seconds = 0.0
        for segment in synthesizer.plan(sentence, settings):
            seconds += engine.synthesize(segment.text, Prosody()).duration_s
        elapsed = time.perf_counter() - started
        rtfs.append(elapsed / seconds)
        audio_s += seconds
        wall_s += elapsed
    return {
        "engine": engine_name,
        "threads": threads,
        "sentences": len(sentences),
        "load_s": round(load_s, 3),
        "median_rtf": round(statistics.median(rtfs), 4),
        "audio_s_per_wall_s": round(audio_s / wall_s, 2),
        "audio_s": round(audio_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _in_child(engine_name: str, threads: int) -> dict:
    # A fresh process per run, so load time and peak RSS are not flattered by an earlier run.
    code = (
        "import json,sys; from voxq.bench import _engine_run; "
        f"print(json.dumps(_engine_run({engine_name!r}, {threads})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"voxq: error: benchmark child failed:\n{out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cmd_engine(args) -> int:
    if args.batch:
        from worker.engines.torch_bench import bench as torch_bench

        sizes = [int(b) for b in args.batch.split(",")]
        rows = torch_bench(sizes, args.device)
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return 0
    threads = [int(t) for t in args.threads.split(",")]
    print(f"engine {args.engine}, corpus of {len(corpus())} sentences (voxq/corpus.txt)")
    print(f"{'threads':>7} {'load s':>7} {'median RTF':>10} {'audio s/wall s':>14} {'peak RSS MB':>11}")
    for count in threads:
        row = _in_child(args.engine, count)
        print(
            f"{row['threads']:>7} {row['load_s']:>7.3f} {row['median_rtf']:>10.4f} "
            f"{row['audio_s_per_wall_s']:>14.2f} {row['peak_rss_mb']:>11.1f}"
        )
    return 0


def add_parser(sub) -> None:
    bench = sub.add_parser("bench", help="print speed and memory figures")
    which = bench.add_subparsers(dest="bench", required=True)
    engine = which.add_parser("engine", help="one engine in one process")
    engine.add_argument("--engine", default="fastspeech2-litert")
    engine.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    engine.add_argument("--batch", help="batch sizes for a batching engine, e.g. 1,4,8,16")
    engine.add_argument("--device", default="cpu")
    engine.set_defaults(func=cmd_engine)
    try:
        from voxq import loadtest
    except ImportError:  # the cluster benchmark arrives with the cluster
        return
    loadtest.add_parser(which)
