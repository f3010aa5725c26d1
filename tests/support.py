"""What the tests share: a private Redis, a real Celery worker, the live cluster `voxq up` starts
(voxq/cluster.py), and waits on conditions. Fixtures live in conftest.py; helpers live here."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import redis
import requests

from voxq.network import free_port

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
FINISHED = ("succeeded", "failed", "canceled")

__all__ = ["ARTIFACTS", "FINISHED", "ROOT", "Gunicorn", "LiveCluster", "RedisServer", "Worker", "free_port",
           "json_lines", "quiet", "scrape", "value", "wait_for", "wait_until", "worker_env"]

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 30, every: float = 0.05, what: str = "") -> T:
    """Call `condition` until it returns something true, and return that; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what or condition}")
        time.sleep(every)


def quiet(redis_url: str) -> bool:
    """Nothing waits in a queue and nothing is taken: every task the cluster was given has ended,
    and none is to run again (a retry with a countdown is a message published, then taken and held)."""
    from shared.store import Store
    from shared.tasks import SYNTHESIS_QUEUES, WEBHOOKS

    store = Store.open(redis_url, result_ttl_s=60)
    return not store.queues.in_flight() and not any(store.queues.depths((*SYNTHESIS_QUEUES, WEBHOOKS)).values())


class RedisServer:
    """A private redis-server on a free port, so tests never touch (or need) a shared one."""

    def __init__(self, workdir: Path):
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run `make test`, which installs it")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(workdir), "--logfile", str(workdir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def worker_env(redis_url: str, data_dir: Path, **extra) -> dict:
    env = dict(os.environ)
    env.update({
        "REDIS_URL": redis_url,
        "VOXQ_DATA_DIR": str(data_dir),
        "VOXQ_HEARTBEAT_TTL_S": "6",
        "PYTHONUNBUFFERED": "1",
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Worker:
    """A real `celery worker` process group, started the way operators start one."""

    def __init__(self, redis_url: str, data_dir: Path, log: Path, queues="interactive,batch",
                 concurrency=1, pool="prefork", name="w1", loglevel="INFO", **env):
        self.log_path = log
        self.redis_url = redis_url
        self.name = f"{name}@{socket.gethostname()}"  # what Celery's remote control addresses
        cmd = [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--pool", pool,
               "--concurrency", str(concurrency), "-Q", queues, "-n", f"{name}@%h", "--loglevel", loglevel,
               "--without-gossip", "--without-mingle"]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=worker_env(redis_url, data_dir, **env),
            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        from shared.store.workers import WorkerRegistry

        registry = WorkerRegistry(redis.Redis.from_url(self.redis_url, decode_responses=True))

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.log_path.read_text()[-3000:]}")
            return bool(registry.alive(6))

        try:
            wait_until(ready, timeout, 0.1)
        except AssertionError:
            raise RuntimeError(f"worker not ready:\n{self.log_path.read_text()[-3000:]}") from None

    def kill(self, sig=signal.SIGKILL) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill(signal.SIGTERM)


def wait_for(client, job_id: str, timeout: float = 120, headers=None) -> dict:
    """A job's body once it has finished, through a Flask test client."""
    body = {}

    def finished():
        nonlocal body
        body = client.get(f"/v1/jobs/{job_id}", headers=headers or {}).get_json()
        return body["status"] in FINISHED and body

    try:
        return wait_until(finished, timeout, 0.1)
    except AssertionError:
        raise AssertionError(f"job {job_id} did not finish: {body}") from None


class Gunicorn:
    """`gunicorn api.app:create_app()` with two workers, beside a cluster: another API's settings."""

    def __init__(self, redis_url: str, data_dir: Path, workdir: Path, workers: int = 2, **env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "gunicorn.log"
        metrics_dir = workdir / "api-metrics"
        metrics_dir.mkdir(exist_ok=True)
        cmd = [sys.executable, "-m", "gunicorn", "-c", "python:api.gunicorn_conf", "--bind", f"127.0.0.1:{self.port}",
               "--workers", str(workers), "--threads", "4", "--timeout", "120", "api.app:create_app()"]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=worker_env(redis_url, data_dir, PROMETHEUS_MULTIPROC_DIR=metrics_dir, **env),
            stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                return requests.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                # Refused before the bind; a read timeout while a worker still boots behind it.
                return False

        try:
            wait_until(healthy, timeout, 0.1)
        except AssertionError:
            raise RuntimeError(f"gunicorn not ready:\n{self.log_path.read_text()[-3000:]}") from None

    def log_entries(self) -> list[dict]:
        return json_lines(self.log_path)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self.proc.wait(30)


class _Part:
    """One child of a live cluster, as the tests see it: its log, and its port for the API."""

    def __init__(self, log_path: Path, port: int | None = None):
        self.log_path = log_path
        self.port = port

    def log_entries(self) -> list[dict]:
        return json_lines(self.log_path)


class LiveCluster:
    """The cluster `voxq up` starts (voxq/cluster.py: a private Redis, the API under the production
    gunicorn config, a CPU worker), without Flower or the webhooks worker. `worker_env` and
    `api_env` go on top of the environment; `worker_metrics` gives the worker a /metrics."""

    def __init__(self, workdir: Path, worker_env: dict | None = None, api_env: dict | None = None,
                 worker_concurrency: int = 1, worker_metrics: bool = False):
        from voxq.cluster import Cluster, ClusterConfig

        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir()
        common = {"VOXQ_HEARTBEAT_TTL_S": "6"}
        worker_env = {**common, **{k: str(v) for k, v in (worker_env or {}).items()}}
        if worker_metrics:
            port = free_port()
            (workdir / "worker-metrics").mkdir()
            worker_env.update(VOXQ_METRICS_PORT=str(port), VOXQ_METRICS_ADDR="127.0.0.1",
                              PROMETHEUS_MULTIPROC_DIR=str(workdir / "worker-metrics"))
            self.worker_metrics_url = f"http://127.0.0.1:{port}/metrics"
        self.cluster = Cluster(ClusterConfig.private(
            self.data_dir, workers=worker_concurrency, worker_env=worker_env,
            api_env={**common, **{k: str(v) for k, v in (api_env or {}).items()}}))
        try:
            self.cluster.start()
            self.cluster.wait_ready()
        except BaseException:
            self.stop()
            raise
        self.url = self.cluster.url
        self.redis_url = self.cluster.redis_url
        logs = self.cluster.supervisor.logs
        self.api = _Part(logs / "api.log", self.cluster.config.port)
        self.worker = _Part(logs / "worker.log")

    def submit(self, **body) -> dict:
        body.setdefault("text", "你好。")
        response = requests.post(f"{self.url}/v1/jobs", json=body, timeout=10)
        assert response.status_code == 202, response.text
        return response.json()

    def job(self, job_id: str) -> dict:
        return requests.get(f"{self.url}/v1/jobs/{job_id}", timeout=10).json()

    def wait(self, job_id: str, timeout: float = 60) -> dict:
        job = {}

        def finished():
            nonlocal job
            job = self.job(job_id)
            return job["status"] in FINISHED and job

        try:
            return wait_until(finished, timeout, 0.1)
        except AssertionError:
            raise AssertionError(f"job {job_id} did not finish: {job}") from None

    def worker_log_entries(self) -> list[dict]:
        return self.worker.log_entries()

    def stop(self) -> None:
        self.cluster.stop()


def json_lines(path: Path) -> list[dict]:
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
    return entries


def scrape(url: str) -> dict[tuple, float]:
    """A Prometheus /metrics page as {(name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted((k, str(v)) for k, v in labels.items()))), 0.0)
