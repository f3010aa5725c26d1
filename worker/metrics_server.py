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

import redis
from prometheus_client import CollectorRegistry, multiprocess, start_http_server
from prometheus_client.core import GaugeMetricFamily

from shared import tasks
from shared.config import Settings

log = logging.getLogger(__name__)

QUEUES = (*tasks.SYNTHESIS_QUEUES, tasks.WEBHOOKS)
# kombu's Redis transport keeps a queue's messages of priority p > 0 in the list "<queue>\x06\x16<p>".
_PRIORITY_SEP = "\x06\x16"


class QueueDepth:
    """voxq_queue_depth{queue}: messages waiting in each broker queue (Redis list lengths)."""

    def __init__(self, redis_url: str):
        self.redis_url = redis_url
        self._client: redis.Redis | None = None

    def _redis(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=1, socket_timeout=2)
        return self._client

    def collect(self):
        family = GaugeMetricFamily("voxq_queue_depth", "Messages waiting in each broker queue", labels=["queue"])
        try:
            pipe = self._redis().pipeline(transaction=False)
            for queue in QUEUES:
                pipe.llen(queue)
                for priority in range(1, 10):
                    pipe.llen(f"{queue}{_PRIORITY_SEP}{priority}")
            lengths = pipe.execute()
        except redis.RedisError as exc:
            # A scrape must still answer with the job metrics when Redis is away.
            log.warning("queue depth unavailable: %s", exc.__class__.__name__)
            return
        per_queue = 10
        for index, queue in enumerate(QUEUES):
            family.add_metric([queue], sum(lengths[index * per_queue:(index + 1) * per_queue]))
        yield family


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
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=folder)
    registry.register(QueueDepth(settings.redis_url))
    addr = os.environ.get("VOXQ_METRICS_ADDR", "0.0.0.0")
    start_http_server(int(port), addr=addr, registry=registry)
    log.info("worker metrics on http://%s:%s/metrics", addr, port)
