"""`voxq bench cluster`: drive the HTTP API with many jobs and compare with one engine in-process."""
from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from voxq.bench.corpus import job_texts
from voxq.bench.figures import percentile as _percentile
from voxq.cluster import Cluster, ClusterConfig, wait_ready
from voxq.settings import load as load_settings


def _single_process_throughput(texts: list[str]) -> tuple[float, dict[str, float]]:
    """Audio seconds per wall second of one engine with one thread, in this process."""
    from shared import plan
    from shared.config import Settings
    from worker.engines import load_engine
    from worker.engines.base import SynthesisConfig

    settings = Settings.load(engine={"threads": 1})
    engine = load_engine(settings)
    engine.synthesize("你好。", SynthesisConfig())
    audio = wall = 0.0
    per_text: dict[str, float] = {}
    for text in texts:
        started = time.perf_counter()
        seconds = sum(engine.synthesize(s.text, SynthesisConfig()).duration_s for s in plan.segments(text, settings))
        elapsed = time.perf_counter() - started
        per_text[text] = elapsed
        audio += seconds
        wall += elapsed
    return audio / wall, per_text


class _Run:
    def __init__(self, url: str, headers: dict):
        self.url = url.rstrip("/")
        self.headers = headers
        self.local = threading.local()

    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
            self.local.session.headers.update(self.headers)
        return self.local.session

    def job(self, text: str, priority: str, poll_s: float = 0.02) -> dict:
        session = self.session()
        started = time.perf_counter()
        response = session.post(f"{self.url}/v1/jobs", json={"text": text, "priority": priority}, timeout=30)
        submit_s = time.perf_counter() - started
        response.raise_for_status()
        job_id = response.json()["id"]
        while True:
            body = session.get(f"{self.url}/v1/jobs/{job_id}", timeout=30).json()
            if body["status"] in ("succeeded", "failed", "canceled"):
                break
            time.sleep(poll_s)
        done_s = time.perf_counter() - started
        if body["status"] != "succeeded":
            raise RuntimeError(f"job {job_id} ended {body['status']}: {body.get('error')}")
        return {"submit_s": submit_s, "done_s": done_s, "audio_s": body["result"]["duration_s"]}


def cmd_cluster(args) -> int:
    api_key = args.api_key or load_settings().cli.api_key
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    cluster = None
    url = args.url
    if not url:
        # The cluster `voxq up` starts (the production gunicorn config), without Flower or webhooks.
        cluster = Cluster(ClusterConfig.private(Path(tempfile.mkdtemp(prefix="voxq-bench-")), workers=args.workers,
                                                log_level="WARNING"))
    try:
        texts = job_texts(args.jobs)
        if cluster:
            cluster.start()
            cluster.wait_ready()
            url = cluster.url
        else:
            wait_ready(url.rstrip("/"))
        run = _Run(url, headers)
        run.job("你好。", "interactive")  # warm every path once
        # The baseline runs while the cluster is ready but idle, so neither run slows the other.
        print(f"measuring one engine in this process on {min(40, len(texts))} of the job texts ...", flush=True)
        single, per_text = _single_process_throughput(texts[:40])

        # Queue overhead: short jobs one at a time on an idle cluster, minus the engine's own time.
        overhead = []
        for text in texts[:20]:
            # One client on an idle cluster: poll every 5 ms so the poller adds little of its own.
            row = run.job(text, "interactive", 0.005)
            overhead.append(row["done_s"] - per_text[text])

        print(f"submitting {args.jobs} jobs with concurrency {args.concurrency} to {url} ...", flush=True)
        started = time.perf_counter()
        # Each client thread opens its keep-alive connection before its first timed submit.
        warm = lambda: run.session().get(f"{url}/healthz", timeout=10)  # noqa: E731
        with ThreadPoolExecutor(args.concurrency, initializer=warm) as pool:
            # Pollers share the two cores with the workers: poll as a real client would.
            rows = list(pool.map(lambda t: run.job(t, "batch", args.poll_interval), texts))
        wall = time.perf_counter() - started
    finally:
        if cluster:
            cluster.stop()
    submit = [r["submit_s"] * 1000 for r in rows]
    done = [r["done_s"] for r in rows]
    throughput = sum(r["audio_s"] for r in rows) / wall
    ideal = args.workers * single
    print(f"jobs                         {len(rows)} (concurrency {args.concurrency}, {args.workers} worker processes)")
    steady = submit[args.concurrency:]  # after the opening burst of `concurrency` simultaneous submits
    print(f"submit latency ms            p50 {_percentile(submit, 50):.1f}  p99 {_percentile(submit, 99):.1f}"
          f"  (p99 after the opening burst {_percentile(steady or submit, 99):.1f})")
    print(f"submit-to-succeeded s        p50 {_percentile(done, 50):.2f}  p99 {_percentile(done, 99):.2f}")
    print(f"queue overhead per short job p50 {statistics.median(overhead) * 1000:.1f} ms (sequential, idle cluster)")
    print(f"cluster throughput           {throughput:.2f} audio s / wall s")
    print(f"single-process engine        {single:.2f} audio s / wall s (1 thread, same run)")
    print(f"ratio to workers x single    {throughput / ideal:.3f}  (target >= 0.85)")
    return 0


def add_parser(which) -> None:
    cluster = which.add_parser("cluster", help="drive the HTTP API and compare with one in-process engine")
    cluster.add_argument("--jobs", type=int, default=200)
    cluster.add_argument("--concurrency", type=int, default=20)
    cluster.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes to start")
    cluster.add_argument("--url", help="an already running API (default: start a private cluster)")
    cluster.add_argument("--api-key", help="for --url (default VOXQ_API_KEY)")
    cluster.add_argument("--poll-interval", type=float, default=0.5,
                         help="seconds between status polls per job under load (default 0.5)")
    cluster.set_defaults(func=cmd_cluster, quiet_native=True)
