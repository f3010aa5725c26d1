"""Request bodies read whole before Flask sees them, and JSON bodies checked before any view
trusts them: a malformed or truncated body is a 400 in the face's shape, never a 500 or a job.

- `BodyGuard` (WSGI middleware) reads the body to its end. A chunked body gunicorn cannot parse,
  or one that ends before its Content-Length (the client went away), becomes a 400; a body over
  the limit a 413. Flask then reads a complete body from memory, so a truncated /tts form is
  never spoken as if it were all the text.
- `parse_json` parses a JSON body and refuses nesting deeper than MAX_JSON_DEPTH (Python's
  parser and pydantic recurse, so a thousand levels would be a RecursionError) and strings with
  a lone surrogate (valid JSON, but no UTF-8 can store it).
"""
from __future__ import annotations

import hashlib
import io
import json

from flask import Flask, request

from api.errors import ApiError

# Deeper than any request of ours needs (metadata is a small object), far below the recursion limit.
MAX_JSON_DEPTH = 32
_PROBLEM = "voxq.body_problem"


class BodyGuard:
    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def __call__(self, environ, start_response):
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        declared = environ.get("CONTENT_LENGTH")
        if chunked or declared:
            self._buffer(environ, chunked, declared)
        return self.app(environ, start_response)

    def _buffer(self, environ, chunked: bool, declared: str | None) -> None:
        try:
            length = None if chunked else int(declared)
        except ValueError:
            length = -1  # gunicorn refuses a bad Content-Length itself; another server may not
        if length is not None and (length < 0 or length > self.max_bytes):
            if length < 0:
                self._refuse(environ, 400, "bad_request", "Content-Length is not a number of bytes")
            return  # Flask answers a declared length over MAX_CONTENT_LENGTH with its 413 unread
        stream = environ["wsgi.input"]
        wanted = self.max_bytes + 1 if length is None else length
        try:
            data = _read(stream, wanted)
        except Exception as exc:  # noqa: BLE001 - gunicorn's parse errors for a bad chunked body
            self._refuse(environ, 400, "bad_request", f"the request body is malformed ({exc.__class__.__name__})")
            return
        if length is None and len(data) > self.max_bytes:
            self._refuse(environ, 413, "payload_too_large", f"request body is larger than {self.max_bytes} bytes")
            return
        if length is not None and len(data) < length:
            self._refuse(environ, 400, "truncated_body",
                         f"the request body ended after {len(data)} of its {length} bytes")
            return
        environ["wsgi.input"] = io.BytesIO(data)
        environ["CONTENT_LENGTH"] = str(len(data))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ["wsgi.input_terminated"] = True

    @staticmethod
    def _refuse(environ, status: int, code: str, message: str) -> None:
        environ[_PROBLEM] = (status, code, message)
        environ["wsgi.input"] = io.BytesIO(b"")
        environ["CONTENT_LENGTH"] = "0"
        environ.pop("HTTP_TRANSFER_ENCODING", None)


def _read(stream, wanted: int) -> bytes:
    parts, size = [], 0
    while size < wanted:
        part = stream.read(min(65536, wanted - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def parse_json():
    """The request's JSON (None when it is not JSON at all); ApiError 400 for a body too deep or
    with a lone surrogate."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        body = None
        too_deep = True
    else:
        too_deep = False
    if too_deep or (body is not None and _deeper_than(body, MAX_JSON_DEPTH)):
        raise ApiError(400, "invalid_json", f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels")
    if body is not None and _has_lone_surrogate(body):
        raise ApiError(400, "invalid_json", "the JSON has a string with a lone surrogate (\\ud800-\\udfff "
                                            "not in a pair), which is no Unicode text")
    return body


def _walk(value):
    """Every value inside `value` with its depth, without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        yield item, depth
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
            stack.extend((k, depth + 1) for k in item)
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def _deeper_than(value, limit: int) -> bool:
    return any(depth > limit + 1 for _, depth in _walk(value))


def _has_lone_surrogate(value) -> bool:
    for item, _ in _walk(value):
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def init_app(app: Flask) -> None:
    app.wsgi_app = BodyGuard(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"])

    @app.before_request
    def _refused_body():
        problem = request.environ.get(_PROBLEM)
        if problem:
            raise ApiError(*problem)


def json_body() -> dict:
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "the body must be JSON (Content-Type: application/json)")
    body = parse_json()
    if body is None:
        raise ApiError(400, "invalid_json", "the body is not valid JSON")
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return body


def body_digest(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
