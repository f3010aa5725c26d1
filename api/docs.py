"""GET /docs: interactive API documentation (Swagger UI) over /openapi.json, served from this app.

Swagger UI's files come from the pinned flask-swagger-ui wheel (its dist/ folder), not from a CDN:
the page works on a machine with no way out, and the browser fetches nothing from elsewhere.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from flask import Blueprint, Flask, make_response, render_template

# Swagger UI sets style attributes on its elements; everything else stays as strict as the page's.
CSP = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))


def swagger_ui_dist() -> Path:
    spec = importlib.util.find_spec("flask_swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("flask-swagger-ui is not installed: `pip install -e .` installs it")
    return Path(next(iter(spec.submodule_search_locations))) / "dist"


def init_app(app: Flask) -> None:
    # Built here, not at import: finding the package's folder is I/O.
    bp = Blueprint("docs", __name__, static_folder=str(swagger_ui_dist()), static_url_path="/docs/assets")

    @bp.get("/docs")
    def docs():
        response = make_response(render_template("docs.html"))
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    app.register_blueprint(bp)
