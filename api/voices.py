"""GET /v1/voices: engines, voices, emotions, formats, rates and limits, as workers registered them."""
from __future__ import annotations

from flask import Blueprint, jsonify

from api import services
from shared import registry

bp = Blueprint("voices", __name__)


@bp.get("/v1/voices")
def list_voices():
    svc = services.get()
    engines = registry.engines(svc.store.redis)
    return jsonify({"engines": engines, "default_engine": svc.settings.engine})
