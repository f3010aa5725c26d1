"""Liveness (/healthz) and readiness (/readyz: Redis answers and a worker has a fresh heartbeat)."""
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
    return jsonify({"status": "ready", "workers": len(workers)})
