"""No dangling queries: every metric an alert rule or a dashboard panel reads is exported by a real
API or worker, once the events it counts have happened (a job, a cache hit, a failure, a webhook
attempt). The broker gauges the alerts lean on are checked against what Redis really holds."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import redis
import requests
import yaml

from shared.store import keyspace
from tests.support import ROOT, LiveCluster, Worker, free_port, scrape, value

RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "voxq.json"
LONG = "这是一个用来占住工作进程的长句子。" * 12
METRIC = re.compile(r"\bvoxq_[a-z0-9_]+\b")


def queried_metrics() -> dict[str, set[str]]:
    """Metric name -> where it is used."""
    used: dict[str, set[str]] = {}
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            for name in METRIC.findall(rule["expr"]):
                used.setdefault(name, set()).add(f"alert {rule['alert']}")
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            for name in METRIC.findall(target["expr"]):
                used.setdefault(name, set()).add(f"panel {panel['title']!r}")
    return used


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("monitoring")
    secrets = workdir / "webhook-secrets.toml"
    secrets.write_text('anonymous = "whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"\n')
    # The first attempt at once, the next a minute later (after this test).
    webhook_env = {"VOXQ_WEBHOOK_SECRETS_FILE": secrets, "VOXQ_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32",
                   "VOXQ_WEBHOOK_PORTS": "1024-65535", "VOXQ_WEBHOOK_RETRY_SCHEDULE": "0,60"}
    ports = {"worker": free_port(), "webhooks": free_port()}
    for name in ports:
        (workdir / f"{name}-metrics").mkdir()
    live = LiveCluster(workdir, api_env=webhook_env, worker_env={
        # Chunks of a minute of audio: the busy job holds the one worker child for seconds at a time.
        **webhook_env, "VOXQ_CHUNK_S": 60, "VOXQ_METRICS_PORT": ports["worker"], "VOXQ_METRICS_ADDR": "127.0.0.1",
        "PROMETHEUS_MULTIPROC_DIR": workdir / "worker-metrics"})
    hooks = Worker(live.redis_url, live.data_dir, workdir / "hooks.log", queues="webhooks", pool="threads",
                   concurrency=2, name="hooks", VOXQ_METRICS_PORT=ports["webhooks"], VOXQ_METRICS_ADDR="127.0.0.1",
                   PROMETHEUS_MULTIPROC_DIR=workdir / "webhooks-metrics", **webhook_env)
    live.scrape_urls = [f"{live.url}/metrics", *(f"http://127.0.0.1:{port}/metrics" for port in ports.values())]
    live.worker_metrics_url = live.scrape_urls[1]
    try:
        hooks.wait_ready()
        yield live
    finally:
        hooks.stop()
        live.stop()


def test_every_metric_a_rule_or_panel_reads_is_exported(cluster):
    store = redis.Redis.from_url(cluster.redis_url)
    # One worker child: the long job holds it while the second waits in the queue.
    busy = cluster.submit(text=LONG)
    while requests.get(f"{cluster.url}/v1/jobs/{busy['id']}", timeout=5).json()["progress"]["chunks_done"] < 1:
        time.sleep(0.05)  # planned, and its first long chunk under way
    waiting = cluster.submit(text="等待中的任务。")
    store.delete(keyspace.job_text(waiting['id']))  # it will fail: its text is gone
    deadline = time.time() + 30
    while value(scrape(cluster.worker_metrics_url), "voxq_queue_oldest_age_seconds", queue="interactive") < 1:
        assert time.time() < deadline, "the waiting job's age never showed"
        time.sleep(0.2)
    assert cluster.wait(busy["id"])["status"] == "succeeded"
    failed = cluster.wait(waiting["id"])
    assert failed["status"] == "failed" and failed["error"]["code"] == "text_expired"
    assert cluster.wait(cluster.submit(text=LONG)["id"])["cache_hit"]
    # Nothing listens on this port: the attempt is counted as a retry.
    cluster.submit(text="回调。", callback_url=f"http://127.0.0.1:{free_port()}/hook")

    def exported() -> set[str]:
        return {name for url in cluster.scrape_urls for name, _ in scrape(url)}

    deadline = time.time() + 30
    while not any(name.startswith("voxq_webhook_deliveries") for name in exported()):
        assert time.time() < deadline, "no webhook attempt was counted"
        time.sleep(0.2)
    names = exported()
    dangling = {name: sorted(where) for name, where in queried_metrics().items() if name not in names}
    assert dangling == {}
    samples = scrape(cluster.worker_metrics_url)
    assert value(samples, "voxq_jobs_failed_total", code="text_expired") == 1
    # The long job, its cache hit, and the job with the callback.
    assert value(samples, "voxq_job_seconds_count", priority="interactive", status="succeeded") == 3
    assert value(samples, "voxq_queue_oldest_age_seconds", queue="interactive") == 0


def test_broker_gauges_match_redis(cluster):
    samples = scrape(cluster.worker_metrics_url)
    assert value(samples, "voxq_workers_alive", queue="interactive") == 1
    assert value(samples, "voxq_workers_alive", queue="webhooks") == 1
    assert value(samples, "voxq_workers_alive", queue="gpu-batch") == 0
    info = redis.Redis.from_url(cluster.redis_url).info("memory")
    assert value(samples, "voxq_redis_memory_max_bytes") == info["maxmemory"]
    assert 0 < value(samples, "voxq_redis_memory_used_bytes") < 10 * info["used_memory"]


def test_rules_and_dashboard_are_the_files_the_chart_ships():
    chart = ROOT / "deploy" / "helm" / "voxq" / "files"
    assert RULES.resolve() == (chart / "alerts.yaml").resolve()
    assert DASHBOARD.resolve() == (chart / "dashboard.json").resolve()
    assert Path(RULES).read_text() and json.loads(DASHBOARD.read_text())["uid"] == "voxq-overview"
