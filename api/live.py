"""voxq's live speech protocol: a WebSocket at /v1/live (README, "Live speech").

The client's first message opens the session: `{"type": "start", "api_key": ..., <options>}`
(the key may come as an `Authorization: Bearer` header instead; browsers cannot send one). Then
`{"type": "text", "text": ...}` (any size), `{"type": "flush"}`, `{"type": "cancel"}` and
`{"type": "finish"}`. The server sends the audio as binary frames in the session's format, and JSON
events: `started`, `sentence_started`, `sentence_ended` (offsets into the text sent, audio times,
marks), `canceled`, `finished`, `error` (the REST API's codes). The session itself is
api/live_session.py; this module is only the wire.
"""
from __future__ import annotations

import json
import logging
import time

from flask import Blueprint
from flask_sock import Sock
from simple_websocket import ConnectionClosed
from werkzeug.routing import WebsocketMismatch

from api import auth, services
from api.live_session import (CLOSE_IDLE, CLOSE_INVALID, Event, LiveError, LiveSession, authenticate,
                              parse_request)

bp = Blueprint("live", __name__)
sock = Sock()
log = logging.getLogger(__name__)

# A client message larger than this is refused: text comes in deltas, not books.
MAX_MESSAGE_CHARS = 64 * 1024
# How often the connection's greenlet looks up from the client's messages (idle and length bounds).
TICK_S = 1.0


class VoxqFace:
    """voxq's frames: audio as binary, every other event as one JSON text frame with its `type`."""

    def render(self, event: Event) -> list[str | bytes]:
        if event.kind == "audio":
            return [event.audio]
        return [json.dumps({"type": event.kind, **event.data}, ensure_ascii=False)]


def refuse(ws, error: LiveError) -> None:
    """An error before the session is open: said, then the connection closed with its code."""
    try:
        ws.send(json.dumps({"type": "error", "code": error.code, "message": error.message, "field": error.field},
                           ensure_ascii=False))
        ws.close(error.close or CLOSE_INVALID, error.code)
    except ConnectionClosed:
        pass


def receive(ws, timeout: float) -> dict | None:
    """The client's next message as JSON, None when none came in `timeout`; LiveError for a frame
    that is not a JSON object."""
    message = ws.receive(timeout=timeout)
    if message is None:
        return None
    if isinstance(message, bytes):
        raise LiveError("invalid_request", "messages are JSON text frames; audio goes only to the client")
    if len(message) > MAX_MESSAGE_CHARS:
        raise LiveError("invalid_request", f"a message is at most {MAX_MESSAGE_CHARS} characters; send text in deltas")
    try:
        body = json.loads(message)
    except ValueError:
        raise LiveError("invalid_request", "a message is not valid JSON") from None
    if not isinstance(body, dict):
        raise LiveError("invalid_request", "a message is a JSON object with a \"type\"")
    return body


def open_session(ws, first: dict | None, face, via: str) -> LiveSession:
    settings = services.get().settings.live
    if first is None:
        raise LiveError("idle_timeout", f"no start message in {settings.idle_timeout_s:g} s", close=CLOSE_IDLE)
    if first.get("type") != "start":
        raise LiveError("invalid_request", "the first message is {\"type\": \"start\", ...}", "type", CLOSE_INVALID)
    options = {k: v for k, v in first.items() if k not in ("type", "api_key")}
    owner = authenticate(first.get("api_key") or auth.bearer_key())
    session = LiveSession(owner, parse_request(options), face, ws, via)
    session.open()
    return session


def converse(ws, session: LiveSession) -> None:
    """The client's messages until the session ends: the finish has been spoken, an error closed
    it, or the client went away."""
    settings = session.live
    heard_at = time.monotonic()
    while not session.outbox.done.is_set():
        problem = session.expired()
        if problem is None and time.monotonic() - heard_at > settings.idle_timeout_s and not session.busy():
            problem = LiveError("idle_timeout", f"no message for {settings.idle_timeout_s:g} s", close=CLOSE_IDLE)
        if problem is not None:
            session.fail(problem)
            break
        try:
            body = receive(ws, TICK_S)
            if body is None:
                continue
            heard_at = time.monotonic()
            kind = body.get("type")
            if kind == "text":
                session.feed(body.get("text"))
            elif kind == "flush":
                session.flush()
            elif kind == "cancel":
                session.cancel()
            elif kind == "finish":
                session.finish()
            else:
                raise LiveError("invalid_request", "type must be one of text, flush, cancel, finish", "type")
        except LiveError as exc:
            if exc.close:
                session.fail(exc)
                break
            session.tell(exc)
    session.outbox.wait(settings.send_timeout_s + 5)


@bp.app_errorhandler(WebsocketMismatch)
def not_a_websocket(_exc):
    """A plain request to a WebSocket path: say what it is, in the API's shape (not Werkzeug's 400)."""
    from api.errors import error_response

    return error_response(426, "upgrade_required", "this path is a WebSocket: connect to it with a WebSocket "
                          "client (README, \"Live speech\")", headers={"Upgrade": "websocket", "Connection": "Upgrade"})


@sock.route("/v1/live", bp=bp)
def live(ws):
    session = None
    try:
        try:
            session = open_session(ws, receive(ws, services.get().settings.live.idle_timeout_s), VoxqFace(), "live")
        except LiveError as exc:
            refuse(ws, exc)
            return
        converse(ws, session)
    except ConnectionClosed:
        pass
    finally:
        if session is not None:
            session.close()
