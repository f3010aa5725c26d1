"""Every error the API returns is JSON: {"error": {"code", "message", "field"}}. Never HTML."""
from __future__ import annotations

import logging

import redis
from flask import Flask, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None, headers=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, field: str | None = None, headers=None):
    response = jsonify({"error": {"code": code, "message": message, "field": field}})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def validation_error(exc: ValidationError) -> ApiError:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    elif first["type"] == "literal_error" and first.get("ctx", {}).get("expected"):
        message = f"must be one of {first['ctx']['expected']}"
    return ApiError(422, "invalid_request", f"{field}: {message}" if field else message, field)


_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
          415: "unsupported_media_type", 429: "rate_limited"}


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError):
        err = validation_error(exc)
        return error_response(err.status, err.code, err.message, err.field)

    @app.errorhandler(redis.RedisError)
    def _redis_down(exc):
        log.warning("redis unavailable: %s", exc.__class__.__name__)
        return error_response(503, "unavailable", "the job store is unavailable; retry shortly", None,
                              {"Retry-After": "5"})

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        code = _CODES.get(exc.code, "http_error")
        message = exc.description or exc.name
        if exc.code == 413:
            message = f"request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes"
        # Keep what the exception knows about the protocol, e.g. the Allow header of a 405.
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return error_response(exc.code, code, message, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error")
