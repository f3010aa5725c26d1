"""`voxq up` as a user runs it: one command, the whole cluster, Ctrl-C stops every child."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest
import requests

from tests.conftest import ROOT, free_port


def children_of(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.slow
def test_up_serves_jobs_and_ctrl_c_stops_everything(tmp_path):
    port, flower_port = free_port(), free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("REDIS_URL", None)
    env.pop("FLOWER_BASIC_AUTH", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "voxq", "up", "--port", str(port), "--flower-port", str(flower_port),
         "--workers", "1", "--data-dir", str(tmp_path / "data"), "--redis-url", "redis://127.0.0.1:1/0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        banner = "".join(proc.stdout.readline() for _ in range(6))
        assert f"http://127.0.0.1:{port}/" in banner
        login = re.search(r"login (\S+):(\S+)", banner)
        assert login, banner
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("cluster never became ready")
        job = requests.post(f"{base}/v1/jobs", json={"text": "一条命令启动整个集群。"}, timeout=10).json()
        while (body := requests.get(f"{base}/v1/jobs/{job['id']}", timeout=10).json())["status"] in ("queued", "running"):
            time.sleep(0.1)
        assert body["status"] == "succeeded"
        # A private redis-server with AOF in the data directory, since the given URL did not answer.
        assert (tmp_path / "data" / "redis").is_dir()
        # Flower is never open.
        flower = f"http://127.0.0.1:{flower_port}/"
        for _ in range(50):
            try:
                assert requests.get(flower, timeout=2).status_code == 401
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        assert requests.get(flower, auth=(login[1], login[2]), timeout=5).status_code == 200
        children = children_of(proc.pid)
        assert len(children) >= 5  # redis, gunicorn, worker, webhooks worker, flower (and their children)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    assert proc.returncode == 0
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, alive


def test_up_refuses_a_public_bind_without_keys(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXQ_API_KEYS")}
    run = subprocess.run([sys.executable, "-m", "voxq", "up", "--host", "0.0.0.0", "--data-dir", str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "refusing to bind 0.0.0.0 without API keys" in run.stderr
    assert "Traceback" not in run.stderr
