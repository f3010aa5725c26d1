"""`voxq bench latency`: what chunked jobs and streaming buy, measured on a private cluster.

Prints, in one run: the first audio byte of a 200-character text on an idle cluster and while a
long job runs (p50 and p99); how long a 3-character job takes behind two long ones; the wall
time of a long job on 2 workers against 1; and the CPU the workers spend on it chunked against
unchunked (the same job planned as one chunk).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import requests

from voxq.bench.corpus import texts_of as _texts
from voxq.bench.figures import percentile as _percentile
from voxq.cluster import Cluster, ClusterConfig
from voxq.errors import CliError


class _Cluster:
    """The cluster `voxq up` starts (without Flower or webhooks), with one worker process of N
    children, and what the figures read from it."""

    def __init__(self, workers: int, worker_env: dict | None = None, api_env: dict | None = None):
        self.data_dir = tempfile.mkdtemp(prefix="voxq-latency-")
        self.cluster = Cluster(ClusterConfig.private(Path(self.data_dir), workers=workers, log_level="WARNING",
                                                     worker_env=worker_env or {}, api_env=api_env or {}))
        try:
            self.cluster.start()
            self.cluster.wait_ready()
        except BaseException:
            self.cluster.stop()
            raise
        self.url = self.cluster.url
        self.session = requests.Session()

    def submit(self, text: str, **options) -> str:
        response = self.session.post(f"{self.url}/v1/jobs", json={"text": text, **options}, timeout=30)
        response.raise_for_status()
        return response.json()["id"]

    def job(self, job_id: str) -> dict:
        return self.session.get(f"{self.url}/v1/jobs/{job_id}", timeout=30).json()

    def wait(self, job_id: str, poll_s: float = 0.02) -> dict:
        while (body := self.job(job_id))["status"] in ("queued", "running"):
            time.sleep(poll_s)
        return body

    def first_byte_s(self, text: str, hops: list | None = None) -> float:
        """From the submit to the first audio byte of the job's stream; with `hops`, the job's
        timed hops (GET ?timings=1) are appended to it."""
        started = time.perf_counter()
        job_id = self.submit(text, format="pcm")
        with self.session.get(f"{self.url}/v1/jobs/{job_id}/stream", stream=True, timeout=120) as response:
            response.raise_for_status()
            # One iterator for the whole body: a second iter_content() would start on a
            # connection the first one's generator closed when it was dropped, and end at once.
            blocks = response.iter_content(chunk_size=None)
            next(blocks)
            first = time.perf_counter() - started
            for _ in blocks:
                pass  # read to the end, so the next request finds an idle cluster
        if hops is not None:
            hops.append(self.session.get(f"{self.url}/v1/jobs/{job_id}", params={"timings": 1},
                                         timeout=30).json()["timings"])
        return first

    def sdk_first_byte_s(self, text: str) -> float:
        """The same through POST /v1/audio/speech with the official OpenAI SDK, streaming pcm."""
        import openai

        client = openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused")
        started = time.perf_counter()
        with client.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy", input=text,
                                                                response_format="pcm") as response:
            chunks = response.iter_bytes()
            next(chunks)
            first = time.perf_counter() - started
            for _ in chunks:
                pass
        return first

    def worker_cpu_s(self) -> float:
        """CPU seconds the worker processes (main and children) have used so far."""
        import psutil

        worker = self.cluster.supervisor.process("worker")
        procs = [psutil.Process(worker.pid), *psutil.Process(worker.pid).children(recursive=True)]
        total = 0.0
        for proc in procs:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                continue
        return total

    def api_rss_mb(self) -> float:
        """Resident memory of the API (gunicorn's master and workers)."""
        import psutil

        api = psutil.Process(self.cluster.supervisor.process("api").pid)
        return sum(p.memory_info().rss for p in [api, *api.children(recursive=True)]) / 2**20

    def stop(self) -> None:
        self.cluster.stop()


def _listen(cluster: _Cluster, job_id: str, streams: int) -> dict:
    """Open `streams` streams of one job at once, read each to the end; the API's RSS and a
    /healthz round trip while they are all open."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    opened = threading.Barrier(streams + 1)

    def listen(_):
        with requests.get(f"{cluster.url}/v1/jobs/{job_id}/stream", stream=True, timeout=300) as response:
            blocks = response.iter_content(chunk_size=None)
            size = len(next(blocks))
            opened.wait()
            return size + sum(len(b) for b in blocks)

    with ThreadPoolExecutor(streams) as pool:
        sizes = [pool.submit(listen, i) for i in range(streams)]
        opened.wait()
        rss = cluster.api_rss_mb()
        started = time.perf_counter()
        requests.get(f"{cluster.url}/healthz", timeout=10)
        health_ms = (time.perf_counter() - started) * 1000
        results = [f.result() for f in sizes]
    return {"complete": sum(1 for r in results if r == results[0]), "rss_mb": rss, "health_ms": health_ms}


def _long_job_s(cluster: _Cluster, text: str) -> tuple[float, float]:
    """(wall seconds, worker CPU seconds) for one job alone on the cluster."""
    cpu = cluster.worker_cpu_s()
    started = time.perf_counter()
    body = cluster.wait(cluster.submit(text, priority="batch"), poll_s=0.2)
    wall = time.perf_counter() - started
    if body["status"] != "succeeded":
        raise CliError(f"the long job ended {body['status']}: {body.get('error')}")
    return wall, cluster.worker_cpu_s() - cpu


def _hop_spans(hops: list[dict]) -> dict[tuple[str, str], list[float]]:
    """Each hop of the first audio (shared/jobs.HOPS), as the time from the one before it."""
    from shared.jobs import HOPS

    spans: dict[tuple[str, str], list[float]] = {}
    for timings in hops:
        for before, after in zip(HOPS, HOPS[1:]):
            if before in timings and after in timings:
                spans.setdefault((before, after), []).append(max(0.0, timings[after] - timings[before]))
    return spans


def _hop_rows(hops: list[dict]) -> list[tuple[str, str, str]]:
    return [(f"  hop {before} -> {after}",
             f"p50 {_percentile(values, 50) * 1000:.1f} ms  p99 {_percentile(values, 99) * 1000:.1f} ms", "printed")
            for (before, after), values in _hop_spans(hops).items()]


def _pieces_ratio(rounds: int = 3) -> str:
    """The engine's throughput yielding pieces against whole calls, interleaved in this process:
    every segment of 200-character jobs in pieces (each job's first segment with its quick first
    piece, as a worker speaks a job's first chunk), against the same segments whole."""
    from shared import plan
    from shared.config import Settings
    from voxq.bench.corpus import texts_of
    from worker.engines import load_engine
    from worker.engines.base import SynthesisConfig

    settings = Settings.load(engine={"threads": 1})
    engine = load_engine(settings)
    jobs = [[s.text for s in plan.segments(text, settings)] for text in texts_of(6, 200)]
    texts = [text for job in jobs for text in job]
    quick = [index == 0 for job in jobs for index in range(len(job))]
    engine.synthesize(texts[0], SynthesisConfig())
    ratios = []
    for _ in range(rounds):
        started = time.perf_counter()
        whole = sum(engine.synthesize(t, SynthesisConfig()).duration_s for t in texts)
        whole_rate = whole / (time.perf_counter() - started)
        started = time.perf_counter()
        pieces = sum(len(p.samples) for t, q in zip(texts, quick)
                     for p in engine.synthesize_pieces(t, SynthesisConfig(), quick_start=q))
        pieces_rate = pieces / engine.sample_rate / (time.perf_counter() - started)
        ratios.append(pieces_rate / whole_rate)
    ratios.sort()
    return (f"median of {rounds}: {ratios[len(ratios) // 2]:.3f} (runs {', '.join(f'{r:.3f}' for r in ratios)}; "
            f"{len(texts)} segments of {len(jobs)} jobs)")


def cmd_latency(args) -> int:
    short_texts = _texts(args.requests * 2 + 1, 200)
    long_text = _texts(1, args.long_chars)[0]
    medium = _texts(2, 2000)
    rows: list[tuple[str, str, str]] = []

    print(f"starting a cluster with {args.workers} worker processes ...", flush=True)
    two = _Cluster(args.workers)
    try:
        two.first_byte_s("你好。")  # warm every path once
        hops: list[dict] = []
        idle = [two.first_byte_s(text, hops) for text in short_texts[:args.requests]]
        rows.append(("first audio byte, 200 chars, idle cluster",
                     f"p50 {_percentile(idle, 50) * 1000:.0f} ms  p99 {_percentile(idle, 99) * 1000:.0f} ms",
                     "p50 <= 150 ms, p99 <= 300 ms"))
        rows += _hop_rows(hops)
        try:
            sdk = [two.sdk_first_byte_s(text) for text in short_texts[:args.requests]]
            rows.append(("the same through POST /v1/audio/speech, OpenAI SDK streaming pcm",
                         f"p50 {_percentile(sdk, 50) * 1000:.0f} ms  p99 {_percentile(sdk, 99) * 1000:.0f} ms",
                         "p50 <= 200 ms"))
        except ImportError:
            rows.append(("the same through the OpenAI SDK", "skipped: the openai package is not installed", ""))
        busy_id = two.submit(long_text)
        while two.job(busy_id)["progress"]["chunks_done"] < 1:
            time.sleep(0.05)
        busy_hops: list[dict] = []
        busy = [two.first_byte_s(text, busy_hops) for text in short_texts[args.requests:2 * args.requests]]
        rows.append((f"the same while a {args.long_chars}-char job runs",
                     f"p50 {_percentile(busy, 50) * 1000:.0f} ms  p99 {_percentile(busy, 99) * 1000:.0f} ms",
                     "p50 <= 300 ms, p99 <= 600 ms"))
        rows += _hop_rows(busy_hops)
        two.session.delete(f"{two.url}/v1/jobs/{busy_id}", timeout=30)
        wall_two = None if args.first_audio_only else _streams_and_fairness(two, args, rows, medium, long_text)
    finally:
        two.stop()
    if wall_two is None:
        return _first_audio_rest(rows, short_texts)

    print(f"the {args.long_chars}-char job on 1 worker, chunked and unchunked ...", flush=True)
    one = _Cluster(1)
    try:
        wall_one, cpu_chunked = _long_job_s(one, long_text + "一")
    finally:
        one.stop()
    whole = _Cluster(1, {"VOXQ_CHUNK_S": "1e9", "VOXQ_FIRST_CHUNK_S": "1e9"})
    try:
        _, cpu_whole = _long_job_s(whole, long_text + "一")
    finally:
        whole.stop()
    rows.append(_first_against_tenth(short_texts))
    rows.append((f"wall time of a {args.long_chars}-char job, {args.workers} workers / 1",
                 f"{wall_one:.1f} s / {wall_two:.1f} s = speed-up {wall_one / wall_two:.2f}", ">= 1.8"))
    rows.append(("worker CPU of that job, chunked / unchunked",
                 f"{cpu_chunked:.1f} s / {cpu_whole:.1f} s = {cpu_chunked / cpu_whole:.3f}", "<= 1.1"))

    rows.append(("engine audio s per wall s, yielded in pieces / whole", _pieces_ratio(), ">= 0.95"))
    _print(rows)
    return 0


def _streams_and_fairness(two: _Cluster, args, rows: list, medium: list[str], long_text: str) -> float:
    """Concurrent streams of one job, a short job behind two long ones, and the long job's wall
    time on the main cluster (for the speed-up against one worker)."""
    # 50 listeners on one long job at once: what the API holds for them.
    rss_before = two.api_rss_mb()
    listened = _listen(two, two.submit(medium[0] + "听", format="pcm"), args.streams)
    rows.append((f"{args.streams} concurrent streams of a 2,000-char job",
                 f"all {listened['complete']} complete; API RSS {rss_before:.0f} -> {listened['rss_mb']:.0f} MB "
                 f"({(listened['rss_mb'] - rss_before) * 1024 / args.streams:.0f} KB a stream); "
                 f"/healthz {listened['health_ms']:.0f} ms meanwhile", "bounded"))

    long_ids = [two.submit(text) for text in medium]
    for job_id in long_ids:
        while two.job(job_id)["progress"]["chunks_done"] < 1:
            time.sleep(0.02)
    started = time.perf_counter()
    short = two.wait(two.submit("你好。"))
    behind = time.perf_counter() - started
    still = sum(two.job(job_id)["status"] == "running" for job_id in long_ids)
    rows.append(("3-char job behind two 2,000-char jobs: audio ready",
                 f"{behind:.2f} s ({short['status']}; {still} of 2 long jobs still running)", "<= 2 s"))
    for job_id in long_ids:
        two.session.delete(f"{two.url}/v1/jobs/{job_id}", timeout=30)
    time.sleep(1)  # let the canceled jobs' chunks drain before timing the long job
    wall_two, _ = _long_job_s(two, long_text + "二")
    return wall_two


def _first_audio_rest(rows: list[tuple[str, str, str]], short_texts: list[str]) -> int:
    """--first-audio-only: after the main cluster's figures, a fresh worker's first job against
    its tenth and the engine's pieces ratio, without the long jobs' scaling runs."""
    rows.append(_first_against_tenth(short_texts))
    rows.append(("engine audio s per wall s, yielded in pieces / whole", _pieces_ratio(), ">= 0.95"))
    _print(rows)
    return 0


def _first_against_tenth(short_texts: list[str], starts: int = 3) -> tuple[str, str, str]:
    """A fresh cluster's first job against its tenth, first audio byte, over `starts` fresh
    clusters (one sample of each is all one start gives, and one sample is noise): models,
    dictionaries and connections are warm from the start."""
    import statistics

    firsts, tenths = [], []
    for _ in range(starts):
        one = _Cluster(1)
        try:
            fresh = [one.first_byte_s(text) for text in short_texts[:10]]
        finally:
            one.stop()
        firsts.append(fresh[0])
        tenths.append(fresh[9])
    first, tenth = statistics.median(firsts), statistics.median(tenths)
    return (f"a worker's first job after start / its tenth, first audio byte (median of {starts} starts)",
            f"{first * 1000:.0f} ms / {tenth * 1000:.0f} ms = {first / tenth:.2f}", "<= 1.2")


def _print(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'measured':<52}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<52}  {target}")


def add_parser(which) -> None:
    latency = which.add_parser("latency", help="first audio, fairness and scaling of chunked jobs")
    latency.add_argument("--workers", type=int, default=2, help="worker processes of the main cluster")
    latency.add_argument("--requests", type=int, default=50, help="first-byte samples per figure")
    latency.add_argument("--long-chars", type=int, default=20000, help="characters of the long job")
    latency.add_argument("--streams", type=int, default=50, help="concurrent streams of one job")
    latency.add_argument("--first-audio-only", action="store_true",
                         help="only the first-audio figures: no concurrent streams, no long jobs' scaling runs")
    latency.set_defaults(func=cmd_latency, quiet_native=True)
