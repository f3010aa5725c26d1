"""`voxq bench engine`: one engine in one process: load time, RTF, peak RSS; and each format's encode cost."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from voxq.bench.corpus import corpus
from voxq.errors import CliError


def _engine_run(engine_name: str, threads: int) -> dict:
    """One engine in this (fresh) process: load time, per-sentence RTF, peak RSS."""
    import resource

    from shared import plan
    from shared.config import Settings
    from worker.engines import load_engine
    from worker.engines.base import SynthesisConfig

    settings = Settings.load(engine={"name": engine_name, "threads": threads})
    started = time.perf_counter()
    engine = load_engine(settings)
    sentences = corpus()
    # Load time is time to ready: a worker warms up (jieba, runtime allocations) before serving.
    engine.synthesize(sentences[0], SynthesisConfig())
    load_s = time.perf_counter() - started
    rtfs, audio_s, wall_s = [], 0.0, 0.0
    for sentence in sentences:
        started = time.perf_counter()
        seconds = 0.0
        for segment in plan.segments(sentence, settings):
            seconds += engine.synthesize(segment.text, SynthesisConfig()).duration_s
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


def _format_costs(engine_name: str) -> list[dict]:
    """Each format's encode time per second of audio: a paragraph of the corpus spoken once into
    16-bit PCM chunks (as workers leave them), then encoded as assembly does, one format at a time;
    and the loudness measurement, which every job with loudness on pays on top."""
    import tempfile
    from pathlib import Path

    import uuid

    from shared import plan
    from shared.chunk_files import PCM, ChunkFiles
    from shared.config import Settings
    from shared.options import FORMATS, SynthesisOptions, rates_for
    from shared.storage import Storage
    from worker import loudness
    from worker.audio import transcode
    from worker.engines import load_engine
    from worker.pipeline import Pipeline

    settings = Settings.load(engine={"name": engine_name})
    engine = load_engine(settings)
    pipeline = Pipeline(engine, settings)
    chunk = plan.Chunk(plan.segments("".join(corpus()[:6]), settings), 0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="voxq-bench-") as folder:
        pcm: dict[int, tuple[Path, float]] = {}
        for fmt in FORMATS:
            rate = engine.sample_rate if engine.sample_rate in rates_for(fmt) else rates_for(fmt)[0]
            if rate not in pcm:
                # The telephone band-pass runs when a G.711 chunk is spoken; it is in the 8 kHz PCM.
                options = SynthesisOptions(format="mulaw" if rate == 8000 else "pcm", sample_rate=rate,
                                           loudness="off")
                files = ChunkFiles(Storage(folder), uuid.uuid4().hex, options.format)
                spoken = pipeline.speak(files, chunk, 0, 1, options)
                pcm[rate] = (files.path(0, PCM), spoken.audio_s)
            path, seconds = pcm[rate]
            started = time.perf_counter()
            transcode([path], Path(folder) / f"out.{fmt}", fmt, rate)
            rows.append({"format": fmt, "rate": rate, "audio_s": round(seconds, 1),
                         "ms_per_audio_s": round(1000 * (time.perf_counter() - started) / seconds, 3)})
        import numpy as np

        path, seconds = pcm[engine.sample_rate]
        samples = np.frombuffer(path.read_bytes(), "<i2").astype(np.float32) / 32768
        started = time.perf_counter()
        loudness.measure(samples, engine.sample_rate)
        rows.append({"format": "loudness (R128 + true peak)", "rate": engine.sample_rate, "audio_s": round(seconds, 1),
                     "ms_per_audio_s": round(1000 * (time.perf_counter() - started) / seconds, 3)})
    return rows


def _in_child(engine_name: str, threads: int) -> dict:
    # A fresh process per run, so load time and peak RSS are not flattered by an earlier run.
    code = (
        "import json,sys; from voxq.bench.engine import _engine_run; "
        f"print(json.dumps(_engine_run({engine_name!r}, {threads})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise CliError(f"benchmark child failed:\n{out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cmd_engine(args) -> int:
    if args.batch:
        from worker.engines.torch_bench import bench as torch_bench

        from shared.config import Settings

        sizes = [int(b) for b in args.batch.split(",")]
        settings = Settings.load(engine={"name": args.engine, "device": args.device})
        rows = torch_bench(sizes, args.device, settings=settings, sentences=args.sentences)
        print(f"engine {args.engine} on {args.device}, {rows[0]['sentences']} sentences per pass; "
              f"LiteRT (1 thread, same run): {rows[0]['litert_throughput']:.2f} audio s/wall s, "
              f"RTF {rows[0]['litert_rtf']:.4f}")
        print(f"{'batch':>5} {'audio s/wall s':>14} {'RTF':>8} {'gain vs 1':>9} {'ratio to LiteRT':>15}")
        for row in rows:
            print(f"{row['batch']:>5} {row['throughput']:>14.2f} {row['rtf']:>8.4f} "
                  f"{row['gain_vs_batch_1'] or 0:>9.3f} {row['ratio_to_litert']:>15.3f}")
        return 0
    threads = [int(t) for t in args.threads.split(",")]
    print(f"engine {args.engine}, corpus of {len(corpus())} sentences (voxq/bench/corpus.txt)")
    print(f"{'threads':>7} {'load s':>7} {'median RTF':>10} {'audio s/wall s':>14} {'peak RSS MB':>11}")
    for count in threads:
        row = _in_child(args.engine, count)
        print(
            f"{row['threads']:>7} {row['load_s']:>7.3f} {row['median_rtf']:>10.4f} "
            f"{row['audio_s_per_wall_s']:>14.2f} {row['peak_rss_mb']:>11.1f}"
        )
    rows = _format_costs(args.engine)
    print(f"\nencoding {rows[0]['audio_s']:g} s of speech, each format from 16-bit PCM (as assembly does)")
    print(f"{'format':>27} {'rate':>6} {'ms per audio s':>14}")
    for row in rows:
        print(f"{row['format']:>27} {row['rate']:>6} {row['ms_per_audio_s']:>14.3f}")
    return 0


def add_parser(which) -> None:
    engine = which.add_parser("engine", help="one engine in one process")
    engine.add_argument("--engine", default="fastspeech2-litert")
    engine.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    engine.add_argument("--batch", help="batch sizes for a batching engine, e.g. 1,4,8,16")
    engine.add_argument("--device", default="cpu")
    engine.add_argument("--sentences", type=int, help="with --batch: sentences per pass, going round the "
                        "corpus (12) again for more")
    engine.set_defaults(func=cmd_engine)
