"""Shared fixtures: a private real Redis, the real engine, a real Celery worker, the real app."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def settings():
    from shared.config import Settings

    return Settings.load()


@pytest.fixture(scope="session")
def engine(settings):
    from worker.engines import load_engine

    return load_engine(settings)


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
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.log_path.read_text()[-3000:]}")
            if registry.alive(6):
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready:\n{self.log_path.read_text()[-3000:]}")

    def kill(self, sig=signal.SIGKILL) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill(signal.SIGTERM)


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def worker(redis_url, data_dir, tmp_path):
    proc = Worker(redis_url, data_dir, tmp_path / "worker.log")
    proc.wait_ready()
    yield proc
    proc.stop()


@pytest.fixture
def app(redis_url, data_dir):
    from api.app import create_app

    return create_app({"TESTING": True, "VOXQ_SETTINGS": {"redis_url": redis_url, "data_dir": data_dir,
                                                           "jobs": {"heartbeat_ttl_s": 6}}})


@pytest.fixture
def client(app):
    return app.test_client()


def wait_for(client, job_id: str, timeout: float = 120, headers=None) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        body = client.get(f"/v1/jobs/{job_id}", headers=headers or {}).get_json()
        if body["status"] in ("succeeded", "failed", "canceled"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {body}")
