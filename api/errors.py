"""Every error the API returns is JSON in the shape of the face that was called, never HTML.

voxq's own API answers {"error": {"code", "message", "field"}}; the seed's /tts and the OpenAI
endpoint have shapes of their own. One set of handlers, registered once on the app, picks the
face's renderer by path, so an error raised before a blueprint is known (a 404 or 405 from
routing) still comes back in that face's shape.
"""
from __future__ import annotations

import logging
from typing import Callable

from flask import Flask, Response, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from shared.store import Unavailable

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None, headers=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


# (path, status, code, message, field) -> (status, body): the error in the shape of the path's face
# (api/faces.py); the status may change with the face.
Shaper = Callable[[str, int, str, str, "str | None"], "tuple[int, dict]"]


def error_body(status: int, code: str, message: str, field: str | None = None) -> tuple[int, dict]:
    """An error in voxq's own shape."""
    return status, {"error": {"code": code, "message": message, "field": field}}


def error_response(status: int, code: str, message: str, field: str | None = None, headers=None) -> Response:
    status, body = error_body(status, code, message, field)
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def validation_error(exc: ValidationError) -> ApiError:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    # pydantic prefixes the messages of our own validators with "Value error, ": not for users.
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    elif first["type"] == "literal_error" and first.get("ctx", {}).get("expected"):
        message = f"must be one of {first['ctx']['expected']}"
    return ApiError(422, "invalid_request", f"{field}: {message}" if field else message, field)


_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
          415: "unsupported_media_type", 429: "rate_limited"}


def init_app(app: Flask, shape: Shaper) -> None:
    """Register the handlers once; `shape` gives each error the shape of its path's face."""

    def render(exc_status: int, code: str, message: str, field=None, headers=None) -> Response:
        status, body = shape(request.path, exc_status, code, message, field)
        response = jsonify(body)
        response.status_code = status
        response.headers.update(headers or {})
        return response

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return render(exc.status, exc.code, exc.message, exc.field, exc.headers)

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError):
        err = validation_error(exc)
        return render(err.status, err.code, err.message, err.field)

    @app.errorhandler(Unavailable)
    def _redis_down(exc):
        log.warning("redis unavailable: %s", exc.__class__.__name__)
        return render(503, "unavailable", "the job store is unavailable; retry shortly", None, {"Retry-After": "5"})

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        code = _CODES.get(exc.code, "http_error")
        message = exc.description or exc.name
        if exc.code == 413:
            message = f"request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes"
        # Keep what the exception knows about the protocol, e.g. the Allow header of a 405.
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return render(exc.code, code, message, None, headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return render(500, "internal_error", "internal error")
