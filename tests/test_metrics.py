"""Metrics and logs for real: the API's /metrics under two gunicorn workers (multiprocess mode), a
prefork worker's /metrics on VOXQ_METRICS_PORT, and JSON log lines that carry a job's ID, length,
hash, duration and status but never its text."""
from __future__ import annotations

import time

import pytest
import requests

from tests.support import scrape, value, wait_until

ENGINE = "fastspeech2-litert"


pytestmark = pytest.mark.live_cluster(worker_metrics=True)


def test_api_counts_requests_latency_and_jobs_across_gunicorn_workers(cluster):
    url = f"{cluster.url}/metrics"
    before = scrape(url)
    # Twenty fresh connections land on both gunicorn workers; the sum must still be exact.
    for _ in range(20):
        assert requests.get(f"{cluster.url}/healthz", timeout=10).status_code == 200
    job = cluster.submit(text="指标测试。")
    cluster.wait(job["id"])
    assert requests.get(f"{cluster.url}/nope/{job['id']}", timeout=10).status_code == 404
    after = scrape(url)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("voxq_api_requests_total", route="/healthz", method="GET", status=200) == 20
    assert moved("voxq_api_requests_total", route="/v1/jobs", method="POST", status=202) == 1
    assert moved("voxq_api_requests_total", route="/v1/jobs/<job_id>", method="GET", status=200) >= 1
    # Unknown paths are one series, not one per path.
    assert moved("voxq_api_requests_total", route="unmatched", method="GET", status=404) == 1
    assert moved("voxq_api_request_seconds_count", route="/healthz", method="GET") == 20
    assert moved("voxq_api_request_seconds_bucket", route="/healthz", method="GET", le="+Inf") == 20
    assert moved("voxq_api_jobs_submitted_total", priority="interactive", via="jobs") == 1


def test_worker_exposes_synthesis_time_rtf_cache_hits_and_queue_depth(cluster):
    url = cluster.worker_metrics_url
    before = scrape(url)
    first = cluster.wait(cluster.submit(text="工人指标测试。")["id"])
    again = cluster.wait(cluster.submit(text="工人指标测试。")["id"])
    assert first["status"] == again["status"] == "succeeded" and again["cache_hit"]
    after = scrape(url)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    # Samples from the prefork child, served by the main process.
    assert moved("voxq_synthesis_seconds_count", engine=ENGINE) == 1
    assert moved("voxq_synthesis_seconds_sum", engine=ENGINE) > 0
    assert moved("voxq_synthesis_rtf_count", engine=ENGINE) == 1
    assert moved("voxq_audio_seconds_total", engine=ENGINE) == pytest.approx(first["result"]["duration_s"], abs=0.01)
    assert moved("voxq_cache_hits_total") == 1
    assert moved("voxq_jobs_finished_total", status="succeeded") == 2
    for queue in ("interactive", "batch", "webhooks", "gpu-interactive", "gpu-batch"):
        assert (("voxq_queue_depth", (("queue", queue),)) in after), queue


def test_queue_depth_counts_waiting_jobs(cluster):
    # One long batch job keeps the only prefork child busy; the two behind it wait in the queue.
    long_job = cluster.submit(text="这是一个用来占住工作进程的长句子。" * 12, priority="batch")
    waiting = [cluster.submit(text=f"排队的第{i}个任务。", priority="batch") for i in range(2)]
    try:
        deadline = time.time() + 30
        depth = 0
        while time.time() < deadline:
            depth = value(scrape(cluster.worker_metrics_url), "voxq_queue_depth", queue="batch")
            if depth == 2:
                break
            time.sleep(0.1)
        assert depth == 2
    finally:
        for job in (long_job, *waiting):
            requests.delete(f"{cluster.url}/v1/jobs/{job['id']}", timeout=10)
    deadline = time.time() + 30
    while value(scrape(cluster.worker_metrics_url), "voxq_queue_depth", queue="batch") and time.time() < deadline:
        time.sleep(0.1)
    assert value(scrape(cluster.worker_metrics_url), "voxq_queue_depth", queue="batch") == 0


def test_logs_are_json_with_job_fields_and_never_the_text(cluster):
    secret = "这句话只应该出现在音频里，不应该出现在日志里。"
    job = cluster.wait(cluster.submit(text=secret)["id"])
    assert job["status"] == "succeeded"
    # The worker logs the end just after recording it.
    wait_until(lambda: [e for e in cluster.worker_log_entries() if e.get("job_id") == job["id"] and e.get("duration_s")
                        and e.get("status") == "succeeded"], 10, what="the worker's log of the job's end")

    api_lines = [e for e in cluster.api.log_entries() if e.get("job_id") == job["id"]]
    queued = next(e for e in api_lines if e["logger"] == "api.submission")
    assert queued["text_chars"] == len(secret) and len(queued["text_sha256"]) == 64
    assert queued["status"] == "queued"
    access = [e for e in api_lines if e["logger"] == "api.access"]
    assert access and all(e["route"] == "/v1/jobs/<job_id>" and e["duration_s"] >= 0 for e in access)

    # The task that spoke the job's last chunk logs its end (earlier chunks log "running").
    ended = [e for e in cluster.worker_log_entries() if e.get("job_id") == job["id"] and e.get("duration_s")][-1]
    assert ended["status"] == "succeeded" and ended["text_chars"] == len(secret)
    assert ended["text_sha256"] == queued["text_sha256"]
    for log in (cluster.api.log_path, cluster.worker.log_path):
        assert secret not in log.read_text() and secret[:6] not in log.read_text()
