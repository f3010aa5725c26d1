"""Faults caused for real: a worker SIGKILLed mid-job, and Redis going away."""
from __future__ import annotations

import time

import pytest

from tests.support import RedisServer, Worker, wait_for

LONG = "随着人工智能技术的快速发展，越来越多的企业开始使用智能语音助手。" * 12


def wait_running(client, job_id, timeout=60, chunks_done=1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        body = client.get(f"/v1/jobs/{job_id}").get_json()
        if body["status"] == "running" and body["progress"]["chunks_done"] >= chunks_done:
            return body
        time.sleep(0.05)
    raise AssertionError("job never started")


@pytest.mark.slow
def test_worker_killed_mid_job_job_finishes_exactly_once(client, redis_url, data_dir, tmp_path):
    # A short visibility timeout, so Redis hands the unacknowledged job to the surviving worker.
    first = Worker(redis_url, data_dir, tmp_path / "w1.log", name="w1", VOXQ_VISIBILITY_TIMEOUT_S=5)
    first.wait_ready()
    job = client.post("/v1/jobs", json={"text": LONG}).get_json()
    wait_running(client, job["id"], chunks_done=2)
    # Kill it while it speaks a chunk: once the next chunk has started and not yet landed.
    store = client.application.extensions["voxq"].store
    deadline = time.time() + 60
    while not ((started := store.chunks.attempts(job["id"])).keys() - store.chunks.landed(job["id"])):
        assert time.time() < deadline, started
        time.sleep(0.01)
    landed = store.chunks.landed(job["id"])
    first.kill()  # SIGKILL to the whole worker: no ack, no cleanup, no goodbye
    second = Worker(redis_url, data_dir, tmp_path / "w2.log", name="w2", VOXQ_VISIBILITY_TIMEOUT_S=5)
    try:
        done = wait_for(client, job["id"], timeout=180)
        assert done["status"] == "succeeded", done
        # Only the interrupted chunk ran again: the chunks that had landed were kept, not redone.
        attempts = store.chunks.attempts(job["id"])
        assert done["progress"]["chunks_total"] == len(attempts) >= 4, (done["progress"], attempts)
        assert sorted(attempts.values()).count(2) == 1 and set(attempts.values()) == {1, 2}, attempts
        assert all(attempts[i] == 1 for i in landed), attempts
        # Exactly once: one audio file, no temp files left by the killed attempt's successor.
        files = sorted(p.name for p in data_dir.rglob("*") if p.is_file())
        assert files == [f"{job['id']}.wav"], files
        log = (tmp_path / "w2.log").read_text()
        assert log.count(f"job {job['id']} succeeded") == 1
    finally:
        second.stop()


@pytest.mark.slow
def test_poison_job_fails_after_max_attempts(client, redis_url, data_dir, tmp_path):
    worker = Worker(redis_url, data_dir, tmp_path / "w.log", VOXQ_VISIBILITY_TIMEOUT_S=3, VOXQ_MAX_ATTEMPTS=1)
    worker.wait_ready()
    job = client.post("/v1/jobs", json={"text": LONG}).get_json()
    wait_running(client, job["id"])
    store = client.application.extensions["voxq"].store
    deadline = time.time() + 60
    while not (store.chunks.attempts(job["id"]).keys() - store.chunks.landed(job["id"])):
        assert time.time() < deadline
        time.sleep(0.01)  # killed while it speaks a chunk, not between two
    worker.kill()
    again = Worker(redis_url, data_dir, tmp_path / "w2.log", VOXQ_VISIBILITY_TIMEOUT_S=3, VOXQ_MAX_ATTEMPTS=1)
    try:
        done = wait_for(client, job["id"], timeout=120)
        assert done["status"] == "failed"
        assert done["error"]["code"] == "worker_lost"
    finally:
        again.stop()


def test_redis_down_answers_503_quickly(tmp_path):
    from api.app import create_app

    server = RedisServer(tmp_path)
    app = create_app({"TESTING": True, "VOXQ_SETTINGS": {"redis_url": server.url, "data_dir": tmp_path}})
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    server.stop()
    for method, path, kwargs in (("get", "/readyz", {}), ("post", "/v1/jobs", {"json": {"text": "你好"}}),
                                 ("get", "/v1/jobs/0123456789abcdef0123456789abcdef", {})):
        started = time.perf_counter()
        response = getattr(client, method)(path, **kwargs)
        elapsed = time.perf_counter() - started
        assert response.status_code == 503, (path, response.data)
        assert response.get_json()["error"]["code"] == "unavailable"
        assert elapsed < 3, f"{path} took {elapsed:.1f} s"
    assert client.get("/healthz").status_code == 200
