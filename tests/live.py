"""A live cluster for the tests of voxq's faces: a private redis-server, a real Celery worker and the
API under gunicorn, started the way operators start them. One per test module: starting them is
the slow part, and these tests only add jobs, never depend on an empty store."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.conftest import ROOT, RedisServer, Worker, free_port, worker_env

ARTIFACTS = ROOT / "test-artifacts"


class Gunicorn:
    """`gunicorn api.app:create_app()` with two workers: metrics must add up across processes."""

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
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn not ready:\n{self.log_path.read_text()[-3000:]}")

    def log_entries(self) -> list[dict]:
        return _json_lines(self.log_path)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self.proc.wait(30)


class LiveCluster:
    def __init__(self, workdir: Path, worker_env: dict | None = None, api_env: dict | None = None,
                 worker_concurrency: int = 1):
        self.workdir = workdir
        self.redis = RedisServer(workdir)
        self.data_dir = workdir / "data"
        self.data_dir.mkdir()
        self.worker = None
        self.api = None
        try:
            self.worker = Worker(self.redis.url, self.data_dir, workdir / "worker.log",
                                 concurrency=worker_concurrency, **(worker_env or {}))
            self.api = Gunicorn(self.redis.url, self.data_dir, workdir, **(api_env or {}))
            self.worker.wait_ready()
            self.api.wait_ready()
        except BaseException:
            self.stop()
            raise
        self.url = self.api.url

    def submit(self, **body) -> dict:
        body.setdefault("text", "你好。")
        response = requests.post(f"{self.url}/v1/jobs", json=body, timeout=10)
        assert response.status_code == 202, response.text
        return response.json()

    def wait(self, job_id: str, timeout: float = 60) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            job = requests.get(f"{self.url}/v1/jobs/{job_id}", timeout=10).json()
            if job["status"] in ("succeeded", "failed", "canceled"):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish: {job}")

    def worker_log_entries(self) -> list[dict]:
        return _json_lines(self.worker.log_path)

    def stop(self) -> None:
        for part in (self.api, self.worker):
            if part is not None:
                part.stop()
        self.redis.stop()


def _json_lines(path: Path) -> list[dict]:
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
    return entries
