"""`voxq bench engine|frontend|cluster`: speed and memory figures, printed; never asserted in tests."""
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
        for segment in synthesizer.plan(sentence, settings):
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

    from shared.config import Settings
    from shared.options import FORMATS, SynthesisOptions, rates_for
    from worker import loudness, synthesizer
    from worker.audio import transcode
    from worker.engines import load_engine

    settings = Settings.load(engine={"name": engine_name})
    engine = load_engine(settings)
    segments = synthesizer.plan("".join(corpus()[:6]), settings)
    rows = []
    with tempfile.TemporaryDirectory(prefix="voxq-bench-") as folder:
        pcm: dict[int, tuple[Path, float]] = {}
        for fmt in FORMATS:
            rate = engine.sample_rate if engine.sample_rate in rates_for(fmt) else rates_for(fmt)[0]
            if rate not in pcm:
                path = Path(folder) / f"{rate}.pcm"
                # The telephone band-pass runs when a G.711 chunk is spoken; it is in the 8 kHz PCM.
                options = SynthesisOptions(format="mulaw" if rate == 8000 else "pcm", sample_rate=rate,
                                           loudness="off")
                chunk = synthesizer.render_chunk(engine, segments, options, settings, path,
                                                 Path(folder) / f"{rate}.json", None, ends_job=True)
                pcm[rate] = (path, chunk.audio_s)
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

        from shared.config import Settings

        sizes = [int(b) for b in args.batch.split(",")]
        settings = Settings.load(engine={"name": args.engine, "device": args.device})
        rows = torch_bench(sizes, args.device, settings=settings)
        print(f"engine {args.engine} on {args.device}, {rows[0]['sentences']} sentences per pass; "
              f"LiteRT (1 thread, same run): {rows[0]['litert_throughput']:.2f} audio s/wall s, "
              f"RTF {rows[0]['litert_rtf']:.4f}")
        print(f"{'batch':>5} {'audio s/wall s':>14} {'RTF':>8} {'gain vs 1':>9} {'ratio to LiteRT':>15}")
        for row in rows:
            print(f"{row['batch']:>5} {row['throughput']:>14.2f} {row['rtf']:>8.4f} "
                  f"{row['gain_vs_batch_1'] or 0:>9.3f} {row['ratio_to_litert']:>15.3f}")
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
    rows = _format_costs(args.engine)
    print(f"\nencoding {rows[0]['audio_s']:g} s of speech, each format from 16-bit PCM (as assembly does)")
    print(f"{'format':>27} {'rate':>6} {'ms per audio s':>14}")
    for row in rows:
        print(f"{row['format']:>27} {row['rate']:>6} {row['ms_per_audio_s']:>14.3f}")
    return 0


# The input classes the front end must plan in linear time (a reading rule that backtracks over a
# long run of one kind of character is quadratic in that run). Fixed seeds: the same text each run.
_PIECES = {
    "digits": "0123456789",
    "latin": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "symbols": "!@#$%^&*()-_=+[]{};:'\",.<>/?~`|\\ ",
    "mixed": ["12", "3.5", "-", "%", "km", "ab", "你好", "，", "。", "$", "/", ":", " ", "2024-03-15",
              "10:30", "@", "v1.2", "\n", "😀", "第3", "1,234"],
    # One run-on sentence: Chinese with no punctuation at all, one segment the splitter must cut.
    "run-on": "我们今天去公园玩了一个下午天气非常好大家都很开心",
}
FRONTEND_CLASSES = tuple(_PIECES)


def frontend_input(kind: str, chars: int, seed: int = 16) -> str:
    """`chars` characters of one input class (see _PIECES)."""
    import random

    rng = random.Random(seed)
    pieces = _PIECES[kind]
    out, size = [], 0
    while size < chars:
        piece = rng.choice(pieces)
        out.append(piece)
        size += len(piece)
    return "".join(out)[:chars]


def frontend_rate(kind: str, chars: int, settings=None) -> float:
    """Characters per second the front end plans (normalise, segment) of one input class."""
    from shared.config import Settings
    from worker import synthesizer

    settings = settings or Settings.load()
    text = frontend_input(kind, chars)
    started = time.perf_counter()
    try:
        synthesizer.plan(text, settings)
    except synthesizer.SynthesisError:
        pass  # symbols alone say nothing: timed all the same
    return chars / (time.perf_counter() - started)


def cmd_frontend(args) -> int:
    from shared.config import Settings
    from worker import synthesizer

    sizes = [int(s) for s in args.sizes.split(",")]
    settings = Settings.load(limits={"max_chars": max(sizes)})
    from shared.text.segmenter import words

    # Load jieba's dictionary and cn2an outside the timing: a worker has both loaded already.
    words("你好世界")
    synthesizer.plan("你好，世界。123 abc", settings)
    print(f"front end (normalise + segment), characters per second; target >= {FRONTEND_TARGET:,} "
          f"in the worst class at 100k")
    print(f"{'class':>8} " + " ".join(f"{f'{n // 1000}k' if n >= 1000 else n:>10}" for n in sizes))
    worst = {}
    for kind in FRONTEND_CLASSES:
        rates = [frontend_rate(kind, n, settings) for n in sizes]
        worst[kind] = rates[-1]
        print(f"{kind:>8} " + " ".join(f"{rate:>10,.0f}" for rate in rates))
    slowest = min(worst, key=worst.get)
    print(f"worst at {sizes[-1]:,}: {slowest} {worst[slowest]:,.0f} chars/s")
    return 0


FRONTEND_TARGET = 50_000


def cmd_pitch(args) -> int:
    """Compare the two pitch mechanisms on the same sentence: the model's f0 offset and WORLD."""
    import math

    import numpy as np
    import pyworld

    from shared.config import Settings
    from worker import pitch
    from worker.engines import baker, load_engine

    engine = load_engine(Settings.load(engine={"name": "fastspeech2-litert"}))
    phonemes = engine.g2p.convert(corpus()[9])

    def speak(offset: float) -> np.ndarray:
        mel, _ = engine.text_to_mel(phonemes.ids, baker.ModelInputs(1.0, 1.0, 1.0, offset, 1.0))
        return engine.mel_to_audio(mel)

    def measure(x: np.ndarray) -> tuple[float, float]:
        x = x.astype(np.float64)
        f0, t = pyworld.dio(x, baker.SAMPLE_RATE)
        f0 = pyworld.stonemask(x, f0, t, baker.SAMPLE_RATE)
        ap = pyworld.d4c(x, f0, t, baker.SAMPLE_RATE)
        voiced = f0 > 0
        # Aperiodicity below ~2.3 kHz in voiced frames: how breathy or buzzy the excitation is.
        return float(np.median(f0[voiced])), float(ap[voiced][:, :200].mean())

    base = speak(0.0)
    f0_base, ap_base = measure(base)
    print(f"unshifted: median F0 {f0_base:.1f} Hz, voiced aperiodicity {ap_base:.3f}")
    print(f"{'ratio':>5} {'method':>12} {'F0 ratio':>8} {'aperiodicity change':>20}")
    for ratio in (0.85, 1.1):
        f0_model, ap_model = measure(speak(math.log(ratio) / pitch.LOG_RATIO_PER_OFFSET))
        f0_world, ap_world = measure(pitch.shift(base, baker.SAMPLE_RATE, ratio))
        for name, f0, ap in (("model f0", f0_model, ap_model), ("WORLD", f0_world, ap_world)):
            print(f"{ratio:>5} {name:>12} {f0 / f0_base:>8.3f} {100 * (ap / ap_base - 1):>19.1f}%")
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
    frontend = which.add_parser("frontend", help="characters per second of the text front end, per input class")
    frontend.add_argument("--sizes", default="1000,10000,100000", help="comma-separated input sizes")
    frontend.set_defaults(func=cmd_frontend)
    which.add_parser("pitch", help="model f0 offset vs WORLD for pitch shifts").set_defaults(
        func=cmd_pitch, quiet_native=True)
    from voxq import latency, loadtest

    loadtest.add_parser(which)
    latency.add_parser(which)
