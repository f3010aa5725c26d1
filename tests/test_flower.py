"""Flower against a real worker: a failed job is a failed task (not a success whose result is
'failed'), its message is still acknowledged exactly once, and the task shows its job ID."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import redis
import requests

from tests.support import ROOT, free_port, wait_for

AUTH = ("ops", "flower-test-password")


@pytest.fixture
def flower(redis_url, tmp_path):
    port = free_port()
    env = dict(os.environ, CELERY_BROKER_URL=redis_url, FLOWER_BASIC_AUTH=":".join(AUTH))
    log = tmp_path / "flower.log"
    # The login comes from the environment, as `voxq up` passes it, never from the command line.
    proc = subprocess.Popen([sys.executable, "-m", "celery", "flower", "--address=127.0.0.1", f"--port={port}"],
                            cwd=ROOT, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if requests.get(f"{url}/healthcheck", timeout=5).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert time.time() < deadline, log.read_text()
        time.sleep(0.2)
    assert requests.get(f"{url}/api/tasks", timeout=5).status_code == 401
    yield url
    proc.terminate()
    proc.wait(30)


def flower_tasks(url: str) -> dict:
    return requests.get(f"{url}/api/tasks", auth=AUTH, timeout=10).json()


def test_a_failed_job_is_a_failed_task_acked_once_with_its_job_id(flower, worker, client, redis_url):
    # Flower learns of tasks from the worker's events: wait until it has heard the worker at all.
    deadline = time.time() + 60
    while not requests.get(f"{flower}/api/workers?refresh=1", auth=AUTH, timeout=30).json():
        assert time.time() < deadline, "Flower never saw the worker"
        time.sleep(0.5)

    # A character with no reading passes the API's check and fails the job in the worker.
    bad = client.post("/v1/jobs", json={"text": "兙。"}).get_json()
    good = client.post("/v1/jobs", json={"text": "你好。"}).get_json()
    assert wait_for(client, bad["id"])["status"] == "failed"
    assert wait_for(client, good["id"])["status"] == "succeeded"

    deadline = time.time() + 60
    while True:
        by_job = {}
        for task in flower_tasks(flower).values():
            for job_id in (bad["id"], good["id"]):
                if job_id in (task.get("args") or ""):
                    by_job[job_id] = task
        if {t.get("state") for t in by_job.values()} >= {"FAILURE", "SUCCESS"} and len(by_job) == 2:
            break
        assert time.time() < deadline, by_job
        time.sleep(0.3)
    failed, succeeded = by_job[bad["id"]], by_job[good["id"]]
    assert failed["state"] == "FAILURE" and "JobFailed" in failed["exception"]
    assert "nothing_to_say" in failed["exception"]
    assert succeeded["state"] == "SUCCESS"
    # The job ID is what Flower shows as the arguments; the text is never in the broker.
    assert failed["args"] == f"['{bad['id']}']"

    # Acknowledged, not redelivered and not retried: one attempt, one log line, nothing left.
    store = client.application.extensions["voxq"].store
    assert store.jobs.get(bad["id"]).attempts == 1
    assert worker.log_path.read_text().count(f"job {bad['id']} planned and spoke chunk 0: failed") == 1
    assert "Traceback" not in worker.log_path.read_text()
    broker = redis.Redis.from_url(redis_url)
    assert broker.hlen("unacked") == 0
    assert broker.llen("interactive") == 0 and broker.llen("batch") == 0
