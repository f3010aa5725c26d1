"""gunicorn's gevent worker, answering what gunicorn rejects itself in JSON, not its HTML page.

gunicorn parses the request line and headers before any WSGI code runs, so a NUL byte in the
path, `Content-Length: abc` or a bad chunk size never reach Flask: gunicorn writes an HTML error
from `gunicorn.util.write_error`. This worker (`worker_class` in api/gunicorn_conf.py) writes the
same status as JSON in the shape of the face the path names. The limit: when the request line
itself cannot be parsed, there is no path, and the answer is in voxq's own shape.
"""
from __future__ import annotations

import contextvars
import json

from gunicorn import util
from gunicorn.workers.ggevent import GeventWorker

# The request gunicorn was parsing when it failed, for the face's shape (a per-greenlet value:
# gevent gives each connection's greenlet its own context).
_failed_request: contextvars.ContextVar = contextvars.ContextVar("voxq_failed_request", default=None)

# gunicorn's own refusals, by status, as the codes voxq's errors use.
_CODES = {400: "bad_request", 403: "forbidden", 414: "uri_too_long", 417: "expectation_failed",
          431: "headers_too_large", 501: "not_implemented"}


def error_body(status: int, reason: str, message: str, path: str | None) -> dict:
    """The JSON the path's face answers this error with (api/faces.py, as Flask's handlers do)."""
    # Imported here, not at the top: gunicorn's master loads this module with its config, and the
    # faces' modules define Prometheus metrics, which must be made in the workers (multiprocess mode).
    from api import faces

    code = _CODES.get(status, "http_error" if status < 500 else "internal_error")
    return faces.error_body(path, status, code, message or reason)[1]


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    request = _failed_request.get()
    path = getattr(request, "path", None)
    # What gunicorn's message says is about the bytes on the wire: a string safe for JSON.
    body = json.dumps(error_body(status_int, reason, str(mesg), path), ensure_ascii=True).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


# gunicorn's base worker calls util.write_error for every error it answers itself, and nothing
# else calls it: replacing it is the one hook gunicorn offers for that page.
util.write_error = write_json_error


class GeventJsonWorker(GeventWorker):
    def handle_error(self, req, client, addr, exc):
        token = _failed_request.set(req if req is not None else getattr(exc, "req", None))
        try:
            super().handle_error(req, client, addr, exc)
        finally:
            _failed_request.reset(token)
