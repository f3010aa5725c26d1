"""Liveness (/healthz) and readiness (/readyz: Redis answers and a worker has a fresh heartbeat)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from api import services
from api.errors import error_response
from shared import registry

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    svc = services.get()
    client = svc.store.redis
    client.ping()  # a RedisError becomes a quick 503 in errors.py
    workers = registry.alive_synthesis(client, svc.settings.heartbeat_ttl_s)
    if not workers:
        return error_response(503, "no_workers", "no synthesis worker has sent a heartbeat recently")
    return jsonify({"status": "ready", "workers": len(workers)})
