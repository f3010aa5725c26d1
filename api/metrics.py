"""The API's Prometheus metrics at GET /metrics, and one structured access-log line per request.

Metrics: requests by route template, method and status; request latency; jobs submitted by
priority and by the interface that took them (jobs, openai_speech, seed).

Several gunicorn workers are several processes. Set PROMETHEUS_MULTIPROC_DIR to an empty folder
private to this API instance (an emptyDir, a tmpfs) before gunicorn starts, and run gunicorn with
`-c python:api.gunicorn_conf`, which empties it at start and marks dead workers. Each worker then
writes its samples there and /metrics adds them all up. Without the variable each process
answers with its own samples only, which is right for a single process (the Flask dev server).
"""
from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

from api import services

bp = Blueprint("metrics", __name__)
access_log = logging.getLogger("api.access")

REQUESTS = Counter("voxq_api_requests_total", "HTTP requests answered", ["route", "method", "status"])
LATENCY = Histogram(
    "voxq_api_request_seconds", "Time to answer an HTTP request", ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
JOBS_SUBMITTED = Counter("voxq_api_jobs_submitted_total", "Jobs stored and queued", ["priority", "via"])
JOBS_UNREPLICATED = Counter("voxq_api_jobs_unreplicated_total",
                            "Jobs withdrawn (503) because too few Redis replicas confirmed them in time")
FIRST_BYTE = Histogram(
    "voxq_api_first_byte_seconds", "From a job's acceptance to its first audio byte sent to a client",
    buckets=(0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0),
)

# Live sessions (api/live_session.py): open now, and from a sentence's text being complete to its
# first audio frame queued for the client.
LIVE_SESSIONS = Gauge("voxq_api_live_sessions", "Live sessions open", multiprocess_mode="livesum")
LIVE_FIRST_AUDIO = Histogram(
    "voxq_api_live_first_audio_seconds", "From a live sentence's text being complete to its first audio frame",
    buckets=(0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0),
)


_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


def first_byte(record, at: float) -> None:
    """Time a job's first audio byte to a client (the stream that sends it first)."""
    accepted = record.timings.get("accepted")
    if services.get().store.jobs.mark(record.id, "first_byte", at) and accepted is not None:
        FIRST_BYTE.observe(max(0.0, at - accepted))


def job_unreplicated() -> None:
    JOBS_UNREPLICATED.inc()


def job_submitted(priority: str, via: str | None = None) -> None:
    JOBS_SUBMITTED.labels(priority, via or request.blueprint or "none").inc()


def _route() -> str:
    # The rule's template, never the path itself: one series per endpoint, not one per job ID.
    return request.url_rule.rule if request.url_rule is not None else "unmatched"


def _start_timer():
    g.voxq_started = time.perf_counter()


@bp.record_once
def _first_hook(state) -> None:
    # First of all before-request hooks, so that requests another hook refuses (401, 429) are
    # timed and counted too.
    state.app.before_request_funcs.setdefault(None, []).insert(0, _start_timer)


@bp.after_app_request
def _count(response):
    started = g.pop("voxq_started", None)
    if started is None:
        return response
    elapsed = time.perf_counter() - started
    route = _route()
    REQUESTS.labels(route, request.method, str(response.status_code)).inc()
    LATENCY.labels(route, request.method).observe(elapsed)
    extra = {"http_method": request.method, "route": route, "http_status": response.status_code,
             "duration_s": round(elapsed, 4)}
    job_id = (request.view_args or {}).get("job_id") or response.headers.get("X-Voxq-Job-Id")
    if job_id:
        extra["job_id"] = job_id
    # Probes and scrapes come every few seconds: worth a line only when debugging.
    level = logging.DEBUG if route in _QUIET_ROUTES else logging.INFO
    access_log.log(level, "%s %s %d", request.method, route, response.status_code, extra=extra)
    return response


def _registry():
    # prometheus-client reads PROMETHEUS_MULTIPROC_DIR itself; the settings say whether it is set.
    if services.get().settings.metrics.multiproc_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


@bp.get("/metrics")
def metrics():
    return Response(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
