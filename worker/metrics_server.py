"""A worker node's Prometheus endpoint: every prefork child's samples, and what the broker holds.

Set VOXQ_METRICS_PORT (and VOXQ_METRICS_ADDR, default 0.0.0.0) to serve them, and
PROMETHEUS_MULTIPROC_DIR to a folder private to this worker node (one per container or pod), set
before the worker starts. Each prefork child writes its samples (synthesis time, RTF, cache hits,
jobs finished, webhook deliveries) to its own file there; the main process serves the sum at
http://ADDR:PORT/metrics, adding what the broker holds (queue depths and ages, live workers,
Redis memory), read from Redis at each scrape, and the audio storage's free space.
"""
from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, multiprocess, start_http_server
from prometheus_client.core import GaugeMetricFamily

from shared import tasks
from shared.config import Settings
from shared.jobs import now
from shared.storage import Storage
from shared.store import Store, Unavailable

log = logging.getLogger(__name__)

QUEUES = (*tasks.SYNTHESIS_QUEUES, tasks.WEBHOOKS)


def _waiting_job(message: str) -> str | None:
    """The job ID of a job's first task (what a client waits on), or None for anything else:
    a later chunk of a running job, or an unreadable message."""
    try:
        envelope = json.loads(message)
        if envelope.get("headers", {}).get("task") != tasks.SYNTHESIZE:
            return None
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(args[0]) if args else None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


class ClusterState:
    """What the broker holds, read from Redis at each scrape:

    voxq_queue_depth{queue}: messages waiting in each broker queue;
    voxq_queue_oldest_age_seconds{queue}: how long the oldest job waiting to start in each
    synthesis queue has waited since it was submitted (0 when none waits);
    voxq_workers_alive{queue}: live workers (by heartbeat) consuming each queue;
    voxq_redis_memory_used_bytes and voxq_redis_memory_max_bytes (0: no limit).
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._store: Store | None = None

    def collect(self):
        try:
            if self._store is None:
                self._store = Store.open(self.settings.redis, self.settings.jobs.result_ttl_s)
            store = self._store
            depths = store.queues.depths(QUEUES)
            oldest = {queue: self._oldest_age(store, tails)
                      for queue, tails in store.queues.oldest(tasks.SYNTHESIS_QUEUES).items()}
            workers: dict[str, int] = {}
            for consumed in store.workers.queues_of(store.workers.alive(self.settings.jobs.heartbeat_ttl_s)).values():
                for queue in consumed:
                    workers[queue] = workers.get(queue, 0) + 1
            used, limit = store.queues.memory()
        except Unavailable as exc:
            # A scrape must still answer with the job metrics when Redis is away.
            log.warning("broker state unavailable: %s", exc.__class__.__name__)
            return
        depth = GaugeMetricFamily("voxq_queue_depth", "Messages waiting in each broker queue", labels=["queue"])
        for queue, count in depths.items():
            depth.add_metric([queue], count)
        yield depth
        age = GaugeMetricFamily("voxq_queue_oldest_age_seconds",
                                "Seconds the oldest job waiting to start in each synthesis queue has waited",
                                labels=["queue"])
        for queue, seconds in oldest.items():
            age.add_metric([queue], seconds)
        yield age
        alive = GaugeMetricFamily("voxq_workers_alive", "Live workers consuming each queue", labels=["queue"])
        for queue in QUEUES:
            alive.add_metric([queue], workers.get(queue, 0))
        yield alive
        yield GaugeMetricFamily("voxq_redis_memory_used_bytes", "Memory Redis uses", value=used)
        yield GaugeMetricFamily("voxq_redis_memory_max_bytes", "Redis's maxmemory (0: no limit)", value=limit)

    @staticmethod
    def _oldest_age(store: Store, tails: list[str]) -> float:
        created = [record.created_at for record in store.jobs.get_many(filter(None, map(_waiting_job, tails)))]
        return max(0.0, (now() - min(created)).total_seconds()) if created else 0.0


class StorageState:
    """The audio storage as this worker sees it, at each scrape:

    voxq_storage_free_bytes and voxq_storage_size_bytes of its filesystem, and
    voxq_storage_writable (1, or 0 when a small probe write fails: full, read-only, gone).
    """

    def __init__(self, settings: Settings):
        self.storage = Storage(settings.data_dir)

    def collect(self):
        try:
            free, size = self.storage.usage()
        except OSError as exc:
            log.warning("storage usage unavailable: %s", exc.__class__.__name__)
            free, size = 0, 0
        yield GaugeMetricFamily("voxq_storage_free_bytes", "Bytes free on the audio storage", value=free)
        yield GaugeMetricFamily("voxq_storage_size_bytes", "Size of the audio storage in bytes", value=size)
        yield GaugeMetricFamily("voxq_storage_writable", "Whether the audio storage takes writes (1) or not (0)",
                                value=0 if self.storage.problem() else 1)


def start(settings: Settings) -> None:
    """Serve /metrics from the worker's main process if VOXQ_METRICS_PORT is set (call before forking)."""
    port = settings.metrics.port
    if not port:
        return
    folder = settings.metrics.multiproc_dir
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
    multiprocess.MultiProcessCollector(collectors, path=str(folder))
    collectors.register(ClusterState(settings))
    collectors.register(StorageState(settings))
    start_http_server(port, addr=settings.metrics.addr, registry=collectors)
    log.info("worker metrics on http://%s:%s/metrics", settings.metrics.addr, port)
