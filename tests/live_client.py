"""A live session from a test's side, over a plain `websockets` client (what users run): send
messages, collect the audio and events in order, wait on what came."""
from __future__ import annotations

import json
import time

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support import wait_until


class Session:
    def __init__(self, base_url: str, path: str = "/v1/live", **connect_options):
        self._connection = connect(base_url.replace("http", "ws", 1) + path, open_timeout=10, **connect_options)
        self.ws = self._connection.__enter__()
        self.items: list = []  # bytes (audio) and dicts (events), in the order they came
        self.times: list[float] = []  # when each came (monotonic)
        self.close_code: int | None = None

    def start(self, **options) -> dict:
        self.send(type="start", **options)
        return self.next_event()

    def send(self, **message) -> None:
        self.ws.send(json.dumps(message, ensure_ascii=False))

    def feed(self, text: str, size: int = 2, every_s: float = 0.0) -> None:
        """Text in deltas of `size` characters, as a model's token stream writes it."""
        for at in range(0, len(text), size):
            self.send(type="text", text=text[at:at + size])
            if every_s:
                time.sleep(every_s)  # the pace of a token stream, not a wait for a condition

    def pull(self, timeout: float = 0.05) -> bool:
        """Take what has come; False once the connection has closed."""
        if self.close_code is not None:
            return False
        try:
            message = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return True
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd else 1006
            return False
        self.items.append(message if isinstance(message, bytes) else json.loads(message))
        self.times.append(time.monotonic())
        return True

    def next_event(self, timeout: float = 30) -> dict:
        seen = len(self.events)
        self.until(lambda: len(self.events) > seen, timeout)
        return self.events[seen]

    def until(self, condition, timeout: float = 60):
        def check():
            if condition():
                return condition()
            if not self.pull():
                if condition():
                    return condition()
                raise AssertionError(f"the server closed the session ({self.close_code}) first; "
                                     f"its last events: {self.events[-3:]}")
            return None

        return wait_until(check, timeout, 0)

    def until_event(self, kind: str, timeout: float = 60, **fields) -> dict:
        def found():
            return next((e for e in self.events if e["type"] == kind
                         and all(e.get(k) == v for k, v in fields.items())), None)

        self.until(found, timeout)
        return found()

    def until_closed(self, timeout: float = 60) -> int:
        wait_until(lambda: self.close_code is not None or not self.pull(0.2), timeout, 0)
        return self.close_code

    @property
    def events(self) -> list[dict]:
        return [i for i in self.items if isinstance(i, dict)]

    def audio(self) -> bytes:
        return b"".join(i for i in self.items if isinstance(i, bytes))

    def kinds(self) -> list[str]:
        return ["audio" if isinstance(i, bytes) else i["type"] for i in self.items]

    def close(self) -> None:
        self._connection.__exit__(None, None, None)
