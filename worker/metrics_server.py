"""A worker node's Prometheus endpoint: every prefork child's samples, and the broker's queue depths.

Set VOXQ_METRICS_PORT (and VOXQ_METRICS_ADDR, default 0.0.0.0) to serve them, and
PROMETHEUS_MULTIPROC_DIR to a folder private to this worker node (one per container or pod), set
before the worker starts. Each prefork child writes its samples (synthesis time, RTF, cache hits,
jobs finished, webhook deliveries) to its own file there; the main process serves the sum at
http://ADDR:PORT/metrics, adding what the broker holds (queue depths and ages, live workers, Redis memory), read from Redis
at each scrape.
"""
from __future__ import annotations

import base64
import json
import logging
import os
from datetime import datetime
from pathlib import Path

import redis
from prometheus_client import CollectorRegistry, multiprocess, start_http_server
from prometheus_client.core import GaugeMetricFamily

from shared import registry, tasks
from shared.config import Settings
from shared.jobs import now
from shared.jobstore import JobStore

log = logging.getLogger(__name__)

QUEUES = (*tasks.SYNTHESIS_QUEUES, tasks.WEBHOOKS)
# kombu's Redis transport keeps a queue's messages of priority p > 0 in the list "<queue>\x06\x16<p>",
# pushes on the left and pops on the right: the oldest message of each list is its last item.
_PRIORITY_SEP = "\x06\x16"
_LISTS_PER_QUEUE = 10


def _lists(queue: str) -> list[str]:
    return [queue, *(f"{queue}{_PRIORITY_SEP}{p}" for p in range(1, _LISTS_PER_QUEUE))]


def _job_id(message: bytes) -> str | None:
    """The job ID a synthesis message carries (its first argument), or None if unreadable."""
    try:
        envelope = json.loads(message)
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(args[0]) if args else None
    except (ValueError, KeyError, IndexError, TypeError):
        return None


class ClusterState:
    """What the broker holds, read from Redis at each scrape:

    voxq_queue_depth{queue}: messages waiting in each broker queue (Redis list lengths);
    voxq_queue_oldest_age_seconds{queue}: how long the oldest waiting synthesis job has waited
    since it was submitted (0 when none waits);
    voxq_workers_alive{queue}: live workers (by heartbeat) consuming each queue;
    voxq_redis_memory_used_bytes and voxq_redis_memory_max_bytes (0: no limit).
    """

    def __init__(self, redis_url: str, heartbeat_ttl_s: int):
        self.redis_url = redis_url
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self._client: redis.Redis | None = None

    def _redis(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=1, socket_timeout=2)
        return self._client

    def collect(self):
        try:
            client = self._redis()
            pipe = client.pipeline(transaction=False)
            for queue in QUEUES:
                for name in _lists(queue):
                    pipe.llen(name)
                    pipe.lindex(name, -1)
            replies = pipe.execute()
            oldest = {queue: self._oldest_age(client, replies, index) for index, queue in enumerate(QUEUES)
                      if queue in tasks.SYNTHESIS_QUEUES}
            workers = self._workers(client)
            memory = client.info("memory")
        except redis.RedisError as exc:
            # A scrape must still answer with the job metrics when Redis is away.
            log.warning("broker state unavailable: %s", exc.__class__.__name__)
            return
        depth = GaugeMetricFamily("voxq_queue_depth", "Messages waiting in each broker queue", labels=["queue"])
        for index, queue in enumerate(QUEUES):
            per_queue = replies[index * 2 * _LISTS_PER_QUEUE:(index + 1) * 2 * _LISTS_PER_QUEUE]
            depth.add_metric([queue], sum(per_queue[0::2]))
        yield depth
        age = GaugeMetricFamily("voxq_queue_oldest_age_seconds",
                                "Seconds the oldest waiting job of each synthesis queue has waited", labels=["queue"])
        for queue, seconds in oldest.items():
            age.add_metric([queue], seconds)
        yield age
        alive = GaugeMetricFamily("voxq_workers_alive", "Live workers consuming each queue", labels=["queue"])
        for queue in QUEUES:
            alive.add_metric([queue], workers.get(queue, 0))
        yield alive
        yield GaugeMetricFamily("voxq_redis_memory_used_bytes", "Memory Redis uses",
                                value=memory.get("used_memory", 0))
        yield GaugeMetricFamily("voxq_redis_memory_max_bytes", "Redis's maxmemory (0: no limit)",
                                value=memory.get("maxmemory", 0))

    @staticmethod
    def _oldest_age(client: redis.Redis, replies: list, index: int) -> float:
        tails = replies[index * 2 * _LISTS_PER_QUEUE + 1:(index + 1) * 2 * _LISTS_PER_QUEUE:2]
        job_ids = [job_id for job_id in map(_job_id, filter(None, tails)) if job_id]
        if not job_ids:
            return 0.0
        pipe = client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(JobStore.job_key(job_id), "record")
        created = []
        for raw in pipe.execute():
            try:
                created.append(datetime.fromisoformat(json.loads(raw)["created_at"]))
            except (TypeError, ValueError, KeyError):
                continue  # a job deleted while queued: nothing waits for it
        return max(0.0, (now() - min(created)).total_seconds()) if created else 0.0

    def _workers(self, client: redis.Redis) -> dict[str, int]:
        names = registry.alive(client, self.heartbeat_ttl_s)
        counts: dict[str, int] = {}
        for raw in client.hmget(registry.QUEUES, names) if names else []:
            for queue in json.loads(raw) if raw else []:
                counts[queue] = counts.get(queue, 0) + 1
        return counts


def start(settings: Settings) -> None:
    """Serve /metrics from the worker's main process if VOXQ_METRICS_PORT is set (call before forking)."""
    port = os.environ.get("VOXQ_METRICS_PORT")
    if not port:
        return
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder or not Path(folder).is_dir():
        raise SystemExit(
            "voxq worker: error: VOXQ_METRICS_PORT is set, so PROMETHEUS_MULTIPROC_DIR must name an existing "
            "folder private to this worker node (set before the worker starts), where prefork children "
            "write their metrics")
    # The last run's files would add its counts to this run's. This process's own file stays:
    # it is already open.
    mine = f"_{os.getpid()}.db"
    for path in Path(folder).glob("*.db"):
        if not path.name.endswith(mine):
            path.unlink(missing_ok=True)
    collectors = CollectorRegistry()
    multiprocess.MultiProcessCollector(collectors, path=folder)
    collectors.register(ClusterState(settings.redis_url, settings.heartbeat_ttl_s))
    addr = os.environ.get("VOXQ_METRICS_ADDR", "0.0.0.0")
    start_http_server(int(port), addr=addr, registry=collectors)
    log.info("worker metrics on http://%s:%s/metrics", addr, port)
