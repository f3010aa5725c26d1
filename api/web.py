"""The web page at /: type, listen, download. Its assets live in api/static and api/templates.

Everything the page needs is served by the app itself; the Content-Security-Policy below lets
the browser fetch nothing from anywhere else.
"""
from __future__ import annotations

from flask import Blueprint, make_response, render_template

bp = Blueprint("web", __name__)

CSP = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "media-src 'self' blob:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))


@bp.get("/")
def index():
    response = make_response(render_template("index.html"))
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
