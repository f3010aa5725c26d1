"""An HTTP receiver for webhooks on loopback, recording every request (tests/test_webhooks.py,
tests/test_chaos.py)."""
from __future__ import annotations

import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Callable


class Receiver:
    """An HTTP server on 127.0.0.1 that records each POST and answers from a script, then 200;
    or, given `answer`, with what it says of each request."""

    def __init__(self, script=(), port: int = 0, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None,
                 answer: Callable[[SimpleNamespace], tuple[int, dict]] | None = None):
        self.script = list(script)
        self.requests: list[SimpleNamespace] = []
        receiver = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = SimpleNamespace(headers={k.lower(): v for k, v in self.headers.items()}, body=body,
                                          path=self.path, at=time.monotonic())
                with lock:  # ThreadingHTTPServer: concurrent deliveries
                    receiver.requests.append(request)
                    if answer is not None:
                        status, headers = answer(request)
                    else:
                        status, headers = receiver.script.pop(0) if receiver.script else (200, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        server_class = type("Server", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6}) \
            if ":" in host else ThreadingHTTPServer
        self.server = server_class((host, port), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}/hooks/tts"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class RefuseFirstAttempts:
    """A Receiver's `answer`: a 503 to each webhook's first attempt, then 200, so every delivery
    waits for its retry; `refused` holds the webhook IDs answered 503 so far."""

    def __init__(self):
        self.refused: set[str] = set()

    def __call__(self, request: SimpleNamespace) -> tuple[int, dict]:
        webhook_id = request.headers["webhook-id"]
        if webhook_id in self.refused:
            return 200, {}
        self.refused.add(webhook_id)
        return 503, {}
