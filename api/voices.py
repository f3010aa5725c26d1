"""GET /v1/voices: engines, voices, emotions, formats, rates and limits, as workers registered them."""
from __future__ import annotations

from flask import Blueprint, jsonify

from api import services

bp = Blueprint("voices", __name__)


@bp.get("/v1/voices")
def list_voices():
    svc = services.get()
    return jsonify({"engines": svc.store.workers.engines(), "default_engine": svc.settings.engine.name})
