"""`voxq bench live`: live sessions over WebSocket (/v1/live) on a private cluster, measured from the
client's side.

Text is fed the way a language model writes it: two characters every 30 ms. A sentence's latency
runs from the moment the client sent the character that completed it to its first audio frame.
Prints, in one run:
- that latency for one session (turns of two or three sentences, each after the one before has
  played and the caller has answered for a second), p50 / p99, for the first sentence of a turn
  (what a caller waits for; the later ones are made as the listener needs them), and how many
  turns ran dry;
- the same with 10 sessions at once;
- how many sessions at once play in real time without an underrun (the audio, once started, never
  runs dry before the text does: each frame arrives before a player started at the first frame
  would need it), callers arriving one every half second; and, for the record, the same number
  arriving all at once (their first sentences then outrun what two cores can speak);
- cancel → the last audio frame before its acknowledgement;
- the API's memory per idle session.
"""
from __future__ import annotations

import json
import random
import threading
import time

from voxq.bench.corpus import corpus
from voxq.bench.figures import percentile
from voxq.bench.latency import _Cluster, _print

DELTA_CHARS = 2
DELTA_S = 0.03


class Client:
    """One live session from the client's side: what it sent when, what came back when."""

    def __init__(self, url: str, **options):
        from simple_websocket import Client as WebSocket

        self.ws = WebSocket.connect(url.replace("http", "ws", 1) + "/v1/live")
        self.ws.send(json.dumps({"type": "start", "format": "pcm", **options}))
        started = self.event()
        if started.get("type") != "started":
            raise RuntimeError(f"the session did not start: {started}")
        self.rate = started["sample_rate"]
        self.sent_at: list[float] = []  # per character sent: when
        self.frames: list[tuple[float, int]] = []  # (arrival, bytes)
        self.events: list[tuple[float, dict]] = []
        self.first_frame: dict[int, float] = {}  # sentence index -> its first audio frame
        self.current: int | None = None
        self.reader: threading.Thread | None = None

    def event(self, timeout: float = 60) -> dict:
        while True:
            message = self.ws.receive(timeout=timeout)
            if message is None:
                raise TimeoutError("no event")
            if isinstance(message, str):
                return json.loads(message)

    def read(self) -> None:
        """Read everything until the session ends, timing each frame (run in a thread)."""
        from simple_websocket import ConnectionClosed

        try:
            while True:
                message = self.ws.receive(timeout=120)
                now = time.perf_counter()
                if message is None:
                    return
                if isinstance(message, bytes):
                    self.frames.append((now, len(message)))
                    if self.current is not None and self.current not in self.first_frame:
                        self.first_frame[self.current] = now
                    continue
                event = json.loads(message)
                self.events.append((now, event))
                if event["type"] == "sentence_started":
                    self.current = event["index"]
                if event["type"] in ("finished", "error"):
                    return
        except ConnectionClosed:
            return

    def start_reading(self) -> None:
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def feed(self, text: str) -> None:
        """Two characters every 30 ms, as a model's token stream."""
        for at in range(0, len(text), DELTA_CHARS):
            piece = text[at:at + DELTA_CHARS]
            self.ws.send(json.dumps({"type": "text", "text": piece}))
            now = time.perf_counter()
            self.sent_at.extend([now] * len(piece))
            time.sleep(DELTA_S)

    def send(self, kind: str) -> None:
        self.ws.send(json.dumps({"type": kind}))

    def wait_for(self, predicate, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not any(predicate(e) for _, e in list(self.events)):
            if time.monotonic() > deadline:
                raise TimeoutError("the session did not get there")
            time.sleep(0.01)

    def latencies(self) -> list[tuple[int, float]]:
        """(sentence index, seconds from its text being complete to its first audio frame)."""
        found = []
        for _, event in self.events:
            if event["type"] == "sentence_started" and event["index"] in self.first_frame:
                complete = self.sent_at[min(event["end"], len(self.sent_at)) - 1]
                found.append((event["index"], self.first_frame[event["index"]] - complete))
        return found

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 - closed by the server already
            pass


_NUMBERED = iter(range(1, 10**9))


def _turns(count: int, seed: int) -> list[str]:
    """Turns of a voice agent: two or three sentences of the corpus each, every one numbered
    apart, so the result cache cannot flatter the figures."""
    rng = random.Random(seed)
    sentences = [s for s in corpus() if 6 <= len(s) <= 40]
    return ["".join(f"第{next(_NUMBERED)}句，{s}" for s in rng.sample(sentences, rng.choice((2, 3))))
            for _ in range(count)]


# After a turn has played, the caller speaks for this long before the agent's next turn.
REPLY_S = 1.0


def _dry(frames: list[tuple[float, int]], rate: int) -> int:
    """Times a player started at the first of `frames` would have run dry before the last."""
    if not frames:
        return 0
    start, played_s, count = frames[0][0], 0.0, 0
    for arrival, size in frames:
        if arrival - start > played_s + 1e-3:
            count += 1
            start = arrival - played_s  # the player waits, then goes on from there
        played_s += size / 2 / rate
    return count


def _session_turns(url: str, turns: list[str], firsts: list, dry: list, lock: threading.Lock) -> None:
    client = Client(url)
    client.start_reading()
    done = 0
    try:
        for turn in turns:
            before, frames = len(client.sent_at), len(client.frames)
            client.feed(turn)
            client.send("flush")
            # The turn has come once its last sentence's audio has all come; it has played once a
            # player started at its first frame reached its end; then the caller answers.
            client.wait_for(lambda e, end=before + len(turn): e["type"] == "sentence_ended" and e["end"] >= end)
            heard = client.frames[frames:]
            played_s = sum(size for _, size in heard) / 2 / client.rate
            time.sleep(max(0.0, heard[0][0] + played_s - time.perf_counter()) + REPLY_S)
            found = [(i, s) for i, s in client.latencies() if i >= done]
            done += len(found)
            with lock:
                if found:
                    firsts.append(found[0][1])
                dry.append(_dry(heard, client.rate))
    finally:
        client.close()


def _latency(url: str, sessions: int, turns_each: int) -> tuple[list[float], list[int]]:
    """(first sentence of each turn: text complete -> first frame; times each turn ran dry)."""
    firsts, dry, lock = [], [], threading.Lock()
    threads = [threading.Thread(target=_session_turns, args=(url, _turns(turns_each, seed), firsts, dry, lock))
               for seed in range(sessions)]
    for thread in threads:
        thread.start()
        time.sleep(random.uniform(0, 0.3))  # not all in step
    for thread in threads:
        thread.join()
    return firsts, dry


def _ms(values: list[float]) -> str:
    return f"p50 {percentile(values, 50) * 1000:.0f} ms, p99 {percentile(values, 99) * 1000:.0f} ms (n={len(values)})"


def _real_time(url: str, sessions: int, rate: int, arrival_s: float) -> tuple[int, int]:
    """(sessions that ran dry at least once, sessions that ended in error): `sessions` callers, one
    arriving every `arrival_s`, each fed an answer of 4 to 6 sentences (about 30 s of speech, so
    that all of them play at once) with sentence numbers of its own (the cache answers none)."""
    clients = [Client(url) for _ in range(sessions)]
    for client in clients:
        client.start_reading()

    def run(client: Client) -> None:
        client.feed("".join(_turns(2, 1000 + sessions)))
        client.send("finish")

    feeders = [threading.Thread(target=run, args=(c,)) for c in clients]
    for feeder in feeders:
        feeder.start()
        time.sleep(arrival_s)
    for feeder in feeders:
        feeder.join()
    for client in clients:
        client.reader.join(timeout=300)
    dry = sum(1 for c in clients if _dry(c.frames, rate))
    failed = sum(1 for c in clients if not any(e["type"] == "finished" for _, e in c.events))
    for client in clients:
        client.close()
    return dry, failed


def _cancel(url: str, rounds: int) -> tuple[list[float], int]:
    """Cancel once the audio flows: from the cancel to the last frame before its acknowledgement,
    and how many frames came after it (there must be none)."""
    lags, late = [], 0
    client = Client(url)
    client.start_reading()
    try:
        for _ in range(rounds):
            before_frames = len(client.frames)
            client.feed(_turns(1, 7)[0])
            deadline = time.monotonic() + 30
            while len(client.frames) < before_frames + 3 and time.monotonic() < deadline:
                time.sleep(0.005)
            acks = sum(1 for _, e in client.events if e["type"] == "canceled")
            canceled_at = time.perf_counter()
            client.send("cancel")
            client.wait_for(lambda e, n=acks: e["type"] == "canceled" and
                            sum(1 for _, x in client.events if x["type"] == "canceled") > n)
            acked_at = next(t for t, e in reversed(client.events) if e["type"] == "canceled")
            frames = [t for t, _ in client.frames[before_frames:]]
            before_ack = [t for t in frames if t <= acked_at]
            lags.append(max(0.0, max(before_ack) - canceled_at) if before_ack else 0.0)
            time.sleep(0.5)  # anything late would have come by now
            late += sum(1 for t, _ in client.frames[before_frames:] if t > acked_at)
    finally:
        client.close()
    return lags, late


def _idle_memory(cluster: _Cluster, sessions: int) -> tuple[float, float]:
    before = cluster.api_rss_mb()
    clients = [Client(cluster.url) for _ in range(sessions)]
    after = cluster.api_rss_mb()
    for client in clients:
        client.close()
    return before, after


def cmd_live(args) -> int:
    env = {"VOXQ_LIVE_SESSIONS_PER_TENANT": "10000", "VOXQ_LIVE_SESSIONS_PER_PROCESS": "10000"}
    cluster = _Cluster(args.workers, api_env=env)
    rows: list[tuple[str, str, str]] = []
    try:
        probe = Client(cluster.url)
        rate = probe.rate
        probe.close()
        _latency(cluster.url, 1, 3)  # warm both API processes and the workers
        if args.turns:
            firsts, dry = _latency(cluster.url, 1, args.turns)
            rows.append(("1 session: sentence text complete -> first audio frame (first of each turn)", _ms(firsts),
                         "p50 <= 150 ms, p99 <= 300 ms"))
            rows.append(("1 session: turns that ran dry", f"{sum(1 for d in dry if d)} of {len(dry)}", "0"))
        if args.turns_each:
            firsts, dry = _latency(cluster.url, 10, args.turns_each)
            rows.append(("10 sessions fed as token streams: the same", _ms(firsts), "p50 <= 400 ms"))
            rows.append(("10 sessions: turns that ran dry", f"{sum(1 for d in dry if d)} of {len(dry)}", "0"))
        best = 0
        for sessions in args.real_time if args.real_time != [0] else []:
            dry_sessions, failed = _real_time(cluster.url, sessions, rate, args.arrival_s)
            rows.append((f"{sessions} sessions, one arriving every {args.arrival_s:g} s, ~30 s of speech each",
                         f"{dry_sessions} ran dry, {failed} did not finish", "0 ran dry"))
            if dry_sessions or failed:
                break
            best = sessions
        if args.real_time != [0]:
            rows.append(("concurrent real-time sessions with no underrun",
                         f"{best} (most tried: {max(args.real_time)})", ">= 20"))
        if args.burst:
            dry_sessions, failed = _real_time(cluster.url, args.burst, rate, 0.05)
            rows.append((f"{args.burst} sessions arriving within {args.burst * 0.05:g} s",
                         f"{dry_sessions} ran dry, {failed} did not finish", "printed"))
        if args.cancels:
            lags, late = _cancel(cluster.url, args.cancels)
            rows.append(("cancel -> last audio frame before its acknowledgement",
                         f"{_ms(lags)}, max {max(lags) * 1000:.0f} ms; {late} frames after it", "<= 50 ms; 0 after"))
        if args.idle:
            before, after = _idle_memory(cluster, args.idle)
            rows.append((f"API memory, {args.idle} idle sessions", f"{before:.0f} -> {after:.0f} MB "
                         f"({(after - before) * 1024 / args.idle:.0f} KB a session)", "printed, bounded"))
    finally:
        cluster.stop()
    _print(rows)
    return 0


def add_parser(which) -> None:
    live = which.add_parser("live", help="live sessions over WebSocket: first audio, concurrency, cancel, memory")
    live.add_argument("--workers", type=int, default=2, help="worker processes")
    live.add_argument("--turns", type=int, default=20, help="turns of the single session (0: skip)")
    live.add_argument("--turns-each", type=int, default=4, help="turns of each of the 10 sessions (0: skip)")
    live.add_argument("--real-time", type=lambda s: [int(x) for x in s.split(",")], default=[10, 15, 20, 25, 30],
                      help="session counts to try, in order (stops at the first that runs dry; 0: skip)")
    live.add_argument("--arrival-s", type=float, default=0.5, help="seconds between two sessions' arrivals")
    live.add_argument("--burst", type=int, default=20, help="sessions arriving at once, for the record (0: none)")
    live.add_argument("--cancels", type=int, default=20, help="cancels to time (0: skip)")
    live.add_argument("--idle", type=int, default=200, help="idle sessions for the memory figure (0: skip)")
    live.set_defaults(func=cmd_live, quiet_native=True)
