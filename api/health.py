"""Liveness (/healthz) and readiness (/readyz: Redis answers and a worker has a fresh heartbeat;
it also reports whether the audio storage takes writes)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from api import services
from api.errors import error_response
from shared import tasks

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    svc = services.get()
    svc.store.ping()  # Redis down becomes a quick 503 in errors.py
    workers = svc.store.workers.alive_consuming(svc.settings.jobs.heartbeat_ttl_s, tasks.SYNTHESIS_QUEUES)
    if not workers:
        return error_response(503, "no_workers", "no synthesis worker has sent a heartbeat recently")
    # A full or read-only storage is reported, and alerted on (deploy/prometheus/alerts.yaml), but
    # keeps the API in service: every replica shares it, and finished audio can still be read.
    problem = svc.storage.problem()
    free, size = svc.storage.usage()
    storage = {"writable": problem is None, "free_bytes": free, "size_bytes": size}
    if problem:
        storage["problem"] = problem
    return jsonify({"status": "ready" if problem is None else "degraded", "workers": len(workers),
                    "storage": storage})
