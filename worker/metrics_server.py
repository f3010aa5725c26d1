"""A worker node's Prometheus endpoint: every prefork child's samples, and the broker's queue depths.

Set VOXQ_METRICS_PORT (and VOXQ_METRICS_ADDR, default 0.0.0.0) to serve them, and
PROMETHEUS_MULTIPROC_DIR to a folder private to this worker node (one per container or pod), set
before the worker starts. Each prefork child writes its samples (synthesis time, RTF, cache hits,
jobs finished, webhook deliveries) to its own file there; the main process serves the sum at
http://ADDR:PORT/metrics, adding the depth of every queue, read from Redis at each scrape.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, multiprocess, start_http_server
from prometheus_client.core import GaugeMetricFamily

from shared import tasks
from shared.config import Settings
from shared.store import Store, Unavailable

log = logging.getLogger(__name__)

QUEUES = (*tasks.SYNTHESIS_QUEUES, tasks.WEBHOOKS)


class QueueDepth:
    """voxq_queue_depth{queue}: messages waiting in each broker queue (Redis list lengths)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._store: Store | None = None

    def collect(self):
        family = GaugeMetricFamily("voxq_queue_depth", "Messages waiting in each broker queue", labels=["queue"])
        try:
            if self._store is None:
                self._store = Store.open(self.settings.redis_url, self.settings.jobs.result_ttl_s)
            depths = self._store.queues.depths(QUEUES)
        except Unavailable as exc:
            # A scrape must still answer with the job metrics when Redis is away.
            log.warning("queue depth unavailable: %s", exc.__class__.__name__)
            return
        for queue, depth in depths.items():
            family.add_metric([queue], depth)
        yield family


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
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(folder))
    registry.register(QueueDepth(settings))
    start_http_server(port, addr=settings.metrics.addr, registry=registry)
    log.info("worker metrics on http://%s:%s/metrics", settings.metrics.addr, port)
