"""A live session: text that arrives as it is written, spoken a sentence at a time by the cluster,
its audio sent back in order as it is made; `flush`, `cancel` (barge-in) and `finish`.

Each sentence is a job of the cluster (first-chunk priority, any worker, the tenant's quotas, the
cache, the metrics), streamed the way GET /v1/jobs/{id}/stream streams a job (api/streams.py): a
worker that dies mid-sentence has its chunk spoken again elsewhere, and what was sent already is
skipped. The session itself is a job record too (running while it is open), which ends succeeded,
canceled (the client left without finishing) or failed (say, its API process died: the workers'
sweep ends it, see shared/store/sessions.py); with `save`, its audio is kept as that job's file.

This module knows no wire protocol. A face (api/live.py, voxq's own; api/dashscope.py,
DashScope's) reads the client's messages, calls the session, and renders the session's events
into frames (`Face`); one writer greenlet (`Outbox`) sends them, in order, within a byte bound.

Sentences are submitted as the listener needs them, a few seconds of audio ahead of what it hears
(VOXQ_LIVE_AHEAD_S), not all at once: a model writes far faster than speech plays, every session's
next sentence should be near the front of the queue, and a barge-in should waste little work.
"""
from __future__ import annotations

import collections
import hashlib
import json
import logging
import time
import wave
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import gevent
import gevent.event
from flask import current_app
from pydantic import Field, ValidationError

from api import auth, lexicons, metrics, services, submission
from api.errors import ApiError, validation_error
from api.streams import StreamAborted, audio_chunks, first_audio, wav_stream_header
from shared import plan, tasks
from shared.jobs import JobRequest, LexiconName, Priority
from shared.options import SynthesisOptions
from shared.text import frontend

log = logging.getLogger(__name__)

# What a live session can send as it is made: formats whose pieces play laid end to end.
LIVE_FORMATS = ("pcm", "wav", "mp3", "opus", "mulaw-raw", "alaw-raw")

# WebSocket close codes (RFC 6455 leaves 4000-4999 to applications).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_ERROR = 1011
CLOSE_INVALID = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_IDLE = 4408
CLOSE_TOO_LONG = 4413
CLOSE_TOO_MANY = 4429
CLOSE_SLOW_READER = 4409


# A listener with less than this left to play is waiting for the next sentence.
URGENT_S = 1.0

# Inline pronunciations a session may carry (DashScope's hot_fix): a lexicon's worth, not a book.
MAX_PRONUNCIATIONS = 500


class LiveRequest(SynthesisOptions):
    """How a session speaks: a job's options, its lexicons, and whether to keep its audio."""

    format: str = "pcm"
    lexicons: list[LexiconName] | None = Field(None, max_length=32)
    priority: Priority = "interactive"
    save: bool = Field(False, description="keep the session's audio as its job's file, fetched like any job's")
    pronunciations: dict[str, str] | None = Field(
        None, max_length=MAX_PRONUNCIATIONS,
        description="word -> tone-numbered pinyin (草地 -> cao3 di4), applied as a lexicon of this session's own, "
        "before its named lexicons")
    metadata: dict[str, Any] | None = None

    def options(self) -> SynthesisOptions:
        return SynthesisOptions(**self.model_dump(include=set(SynthesisOptions.model_fields)))


class LiveError(Exception):
    """Why a session cannot go on (or a message was refused): the REST API's codes, and the
    close code to end the connection with (None: the session goes on)."""

    def __init__(self, code: str, message: str, field: str | None = None, close: int | None = None):
        super().__init__(message)
        self.code, self.message, self.field, self.close = code, message, field, close

    @classmethod
    def of(cls, exc: ApiError, close: int | None = None) -> "LiveError":
        return cls(exc.code, exc.message, exc.field, close)


@dataclass
class Sentence:
    """A piece of the session's text, spoken as one job: [start, end) in the text the client sent."""

    index: int
    start: int
    end: int
    text: str
    job_id: str | None = None
    cut_at: float = 0.0  # when its text was complete (monotonic)
    # Set once its job was submitted or refused: a submit waits on Redis, and meanwhile another
    # greenlet of the session must neither submit it again nor go on without it.
    settled: gevent.event.Event = field(default_factory=gevent.event.Event)
    submitting: bool = False

    def expected_s(self, speed: float) -> float:
        """About how much audio it will make (the plan's estimate, which sizes chunks too)."""
        return sum(1 for ch in self.text if ch.isalnum()) * plan.SECONDS_PER_CHAR / speed


@dataclass
class Event:
    """What a session tells its client; a face renders it into frames."""

    kind: str  # started, audio, sentence_started, sentence_ended, canceled, finished, error
    data: dict = field(default_factory=dict)
    audio: bytes = b""


class Face(Protocol):
    def render(self, event: Event) -> list[str | bytes]: ...


class Outbox:
    """The frames of one WebSocket, sent by one greenlet in order. Audio waits here for a client
    that reads slower than speech is made, up to `max_bytes`; past that the session waits for the
    client (so a client reading at the pace it plays is served), and a client that takes nothing
    for `send_timeout_s` is cut off: its socket would hold this process's memory for ever."""

    def __init__(self, ws, max_bytes: int, send_timeout_s: float):
        self.ws = ws
        self.max_bytes = max_bytes
        self.send_timeout_s = send_timeout_s
        self.frames: collections.deque = collections.deque()
        self.size = 0
        self.ready = gevent.event.Event()
        self.drained = gevent.event.Event()  # set as frames go out
        self.done = gevent.event.Event()
        self.closing: tuple[int, str] | None = None
        self.broken = False
        self.cut_off = False  # the client took nothing for send_timeout_s
        self.writer = gevent.spawn(self._write)

    def put(self, frames: list[str | bytes], valid: Callable[[], bool] | None = None) -> bool:
        """Queue frames. Audio past the bound waits for the client to take some (backpressure: the
        session makes no more meanwhile), and is dropped if `valid` says it no longer should go (a
        cancel came while it waited); False when the client took nothing for send_timeout_s.
        Events never wait: they are small, and the error that ends a slow session is one."""
        size = sum(len(f) for f in frames)
        if any(isinstance(f, bytes) for f in frames):
            while self.size and self.size + size > self.max_bytes and not (self.closing or self.broken):
                self.drained.clear()
                if not self.drained.wait(self.send_timeout_s):
                    return False
            if valid is not None and not valid():
                return True
        if self.closing or self.broken:
            return True
        self.frames.extend(frames)
        self.size += size
        self.ready.set()
        return True

    def drop_audio(self) -> None:
        """Forget the audio not yet sent (a cancel): what is queued after this is all that goes."""
        kept = collections.deque(f for f in self.frames if not isinstance(f, bytes))
        self.frames = kept
        self.size = sum(len(f) for f in kept)
        self.drained.set()

    def close(self, code: int, reason: str = "") -> None:
        """Send what is queued, then close with `code`."""
        if self.closing is None:
            self.closing = (code, reason[:120])
            self.ready.set()

    def abort(self, code: int, reason: str = "") -> None:
        """Close now, dropping what is queued."""
        self.frames.clear()
        self.size = 0
        self.close(code, reason)

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    def _write(self) -> None:
        try:
            while True:
                while not self.frames:
                    if self.closing:
                        self._close()
                        return
                    self.ready.clear()
                    self.ready.wait()
                frame = self.frames.popleft()
                self.size -= len(frame)
                try:
                    with gevent.Timeout(self.send_timeout_s):
                        self.ws.send(frame)
                except gevent.Timeout:
                    log.warning("live session: the client took nothing for %g s; cut off", self.send_timeout_s)
                    self.broken = self.cut_off = True
                    _drop(self.ws)
                    return
                self.drained.set()
        except Exception:  # noqa: BLE001 - the client went away: nothing more can be sent
            self.broken = True
        finally:
            self.done.set()

    def _close(self) -> None:
        code, reason = self.closing
        try:
            with gevent.Timeout(self.send_timeout_s):
                self.ws.close(code, reason)
        except BaseException:  # noqa: BLE001 - gone already, or not reading: either way it is over
            _drop(self.ws)


def _drop(ws) -> None:
    """End the connection without a close handshake (the client reads nothing)."""
    ws.connected = False
    try:
        ws.sock.close()
    except OSError:
        pass


def authenticate(key: str | None) -> str:
    """The tenant of an API key given in a session's first message or its upgrade request."""
    try:
        return auth.tenant_for_key(key)
    except ApiError as exc:
        raise LiveError.of(exc, CLOSE_UNAUTHORIZED) from None


def parse_request(body: dict) -> LiveRequest:
    """A session's options, checked as a job's are; LiveError (closing) when they are refused."""
    try:
        request = LiveRequest.model_validate(body)
    except ValidationError as exc:
        raise LiveError.of(validation_error(exc), CLOSE_INVALID) from None
    if request.format not in LIVE_FORMATS:
        raise LiveError("invalid_request", f"format: a live session sends {', '.join(LIVE_FORMATS)}; "
                        f"got {request.format!r}", "format", CLOSE_INVALID)
    from api import validation

    caps = validation.engine_caps()
    problem = plan.check_options(request.options(), validation.known_emotions(caps), validation.known_voices(caps))
    if problem:
        raise LiveError(*problem, close=CLOSE_INVALID)
    return request


class Process:
    """This API process's live sessions: its own bound, and one greenlet renewing their leases."""

    def __init__(self):
        self.sessions: dict[str, "LiveSession"] = {}
        self.renewer = None

    def add(self, session: "LiveSession", lease_s: float) -> None:
        self.sessions[session.id] = session
        if self.renewer is None or self.renewer.dead:
            self.renewer = gevent.spawn(self._renew, current_app._get_current_object(), lease_s)

    def remove(self, session: "LiveSession") -> None:
        self.sessions.pop(session.id, None)

    def _renew(self, app, lease_s: float) -> None:
        with app.app_context():
            while self.sessions:
                gevent.sleep(lease_s / 3)
                try:
                    services.get().store.sessions.renew([(s.id, s.owner) for s in self.sessions.values()], lease_s)
                except Exception:  # noqa: BLE001 - Redis blinked: the next renewal comes well before the lease ends
                    log.warning("live sessions: could not renew their leases", exc_info=True)


PROCESS = Process()


class LiveSession:
    """One client's session; its methods are called by the face's greenlet, and its audio is sent by
    its own (`_send`). gevent runs one greenlet at a time, so state changes between two waits are
    atomic: a cancel empties the outbox and queues its acknowledgement before any other audio can go."""

    def __init__(self, owner: str, request: LiveRequest, face: Face, ws, via: str = "live", outbox: Outbox | None = None):
        svc = services.get()
        self.settings = svc.settings
        self.live = svc.settings.live
        self.owner = owner
        self.request = request
        self.options = request.options()
        self.face = face
        self.via = via
        self.id = ""  # the session's job ID, once it is open
        # A face that runs several sessions on one connection (DashScope's) passes its outbox.
        self.outbox = outbox or Outbox(ws, self.live.buffer_bytes, self.live.send_timeout_s)
        self.own_outbox = outbox is None
        self.app = current_app._get_current_object()
        self.text: list[str] = []  # every delta the client sent, in order
        self.received = 0  # characters received: the offset of the next delta
        self.pending = ""  # text after the last sentence cut
        self.pending_at = 0  # its offset
        self.sentences: collections.deque[Sentence] = collections.deque()
        self.count = 0  # sentences cut so far
        self.generation = 0  # moves on with each cancel: audio of an older one is not sent
        self.wake = gevent.event.Event()
        self.finishing = False
        self.ended = False
        self.opened_at = time.monotonic()
        self.audio_ms = 0.0  # audio sent whole so far
        # When the listener will have played all that was sent, if it plays each sentence as it
        # comes (monotonic): how far ahead of it the session is.
        self.play_end = time.monotonic()
        self.saved: list[str] = []  # the job IDs whose audio makes the session's (with save)
        self.names: list[str] = []
        self.pause_timer = None
        self.sender = None
        self.header_sent = False
        self.error: LiveError | None = None
        self.done = gevent.event.Event()  # set once `finished` is queued
        self.released = True  # nothing to let go of until it is open

    # -- opening -------------------------------------------------------------------------------
    def open(self) -> None:
        """Take the places, make the record, start sending; LiveError (closing) when refused."""
        svc = services.get()
        tenant = auth.keyring().tenant(self.owner)
        if tenant.requests_per_minute and svc.store.limits.wait_ms(tenant.name, tenant.requests_per_minute):
            raise LiveError("rate_limited", f"more than {tenant.requests_per_minute} requests per minute; retry later",
                            close=CLOSE_TOO_MANY)
        try:
            self.names = lexicons.for_request(self.request.lexicons, self.owner)
        except ApiError as exc:
            raise LiveError.of(exc, CLOSE_INVALID) from None
        if len(PROCESS.sessions) >= self.live.sessions_per_process:
            raise LiveError("too_many_sessions", f"this API process serves {self.live.sessions_per_process} live "
                            "sessions already; retry shortly (another process may have room)", close=CLOSE_TOO_MANY)
        job = JobRequest(**self.options.model_dump(), text="", lexicons=self.names, priority=self.request.priority,
                         metadata=self.request.metadata)
        record = svc.store.jobs.create(job, self.owner, self.names)
        self.id = record.id
        # The lease names the record: the workers' sweep ends it if this process dies.
        if not svc.store.sessions.open(self.id, self.owner, self.live.lease_s, self.live.sessions_per_tenant):
            svc.store.jobs.discard(record)
            raise LiveError("too_many_sessions", f"this key has {self.live.sessions_per_tenant} live sessions open; "
                            "finish one first", close=CLOSE_TOO_MANY)
        if self.request.pronunciations:
            try:
                self._store_pronunciations(svc)
            except LiveError:
                svc.store.sessions.close(self.id, self.owner)
                svc.store.jobs.discard(record)
                raise
        # Running from the start: no worker ever takes the session's own record.
        svc.store.jobs.mark_running(self.id)
        PROCESS.add(self, self.live.lease_s)
        self.released = False
        metrics.LIVE_SESSIONS.inc()
        log.info("live session %s opened (%s, %s)", self.id, self.via, self.options.format)
        self.sender = gevent.spawn(self._in_app, self._send)
        self._emit(Event("started", {"session_id": self.id, "format": self.options.format,
                                     "sample_rate": self._rate()}))

    def _rate(self) -> int | None:
        """The rate the audio comes at: the one asked for, else the engine's own (None while no
        worker has registered); a client of raw PCM must know it."""
        if self.options.sample_rate:
            return self.options.sample_rate
        from api import validation

        rates = {caps.get("native_sample_rate") for caps in validation.engine_caps()} - {None}
        return rates.pop() if len(rates) == 1 else None

    def _store_pronunciations(self, svc) -> None:
        """The session's inline pronunciations as a lexicon of its own, named for the session, first
        in its list: the workers read it like any lexicon, and it goes when the session does."""
        from shared.jobs import now
        from shared.text.lexicon import LexiconError, parse, stored

        content = json.dumps({"entries": [{"grapheme": word, "phoneme": reading}
                                          for word, reading in self.request.pronunciations.items()]},
                             ensure_ascii=False)
        try:
            entries = parse(content, MAX_PRONUNCIATIONS)
        except LexiconError as exc:
            raise LiveError("invalid_lexicon", f"pronunciations: {exc}", "pronunciations", CLOSE_INVALID) from None
        # Outside the tenant's count of lexicons: it is the session's, and lives as long as it does.
        svc.store.lexicons.put(self.owner, self.lexicon_name, stored(content, "json", entries, now().isoformat()),
                               limit=1 << 30)
        self.names = [self.lexicon_name, *self.names]

    @property
    def lexicon_name(self) -> str:
        return f"live-{self.id}"

    # -- what the client sends -----------------------------------------------------------------
    def feed(self, delta: str) -> None:
        """Text as it is written: whole sentences are spoken at once, a clause after a pause."""
        if self.finishing or self.ended:
            raise LiveError("invalid_request", "the session is finishing: no more text", "text")
        if not isinstance(delta, str):
            raise LiveError("invalid_request", "text must be a string", "text")
        if self.received + len(delta) > self.live.max_chars:
            raise LiveError("text_too_long", f"a live session takes at most {self.live.max_chars} characters",
                            "text", CLOSE_TOO_LONG)
        if not delta:
            return
        self.text.append(delta)
        self.received += len(delta)
        self.pending += delta
        while end := plan.sentence_end(self.pending):
            self._cut(end)
        if len(self.pending) >= self.live.max_sentence_chars:
            self._cut(plan.last_clause_end(self.pending) or len(self.pending))
        self._arm_pause()

    def flush(self) -> None:
        """Speak what has been sent, whole sentence or not."""
        self._cut(len(self.pending))

    def cancel(self) -> None:
        """Barge-in: nothing more of what was sent is spoken, and no audio frame follows the
        acknowledgement. The cluster's work on it stops at its next piece. The session stays open."""
        self.generation += 1
        self.play_end = time.monotonic()  # the client stops playing on a barge-in
        dropped = self._in_flight()
        self.sentences.clear()
        self.pending_at += len(self.pending)
        self.pending = ""
        self.outbox.drop_audio()
        self._emit(Event("canceled", {"sentences": len(dropped)}))
        for sentence in dropped:
            self._cancel_job(sentence.job_id)
            if sentence.job_id in self.saved:
                self.saved.remove(sentence.job_id)

    def finish(self) -> None:
        """No more text: the rest is spoken, then `finished`, then the close."""
        if self.finishing:
            return
        self.flush()
        self.finishing = True
        self.wake.set()

    def close(self, reason: str = "the client closed the connection") -> None:
        """The connection ended: work in flight stops, the record and the places are let go."""
        if self.ended:
            return
        self.ended = True
        self.generation += 1
        if self.outbox.cut_off and self.error is None:
            self.error = self._slow_reader()
        for greenlet in (self.pause_timer, self.sender):
            if greenlet is not None and greenlet is not gevent.getcurrent():
                greenlet.kill(block=False)
        for sentence in self._in_flight():
            self._cancel_job(sentence.job_id)
        self.sentences.clear()  # one still being submitted is canceled as its submit returns
        if self.own_outbox:
            self.outbox.abort(CLOSE_GOING_AWAY, reason)  # its writer ends; a gone client gets nothing
        svc = services.get()
        try:
            if svc.store.jobs.status(self.id) == "running":
                self._save_text()
                if self.error is not None:
                    svc.store.jobs.fail(self.id, self.error.code, self.error.message)
                else:
                    svc.store.jobs.cancel(self.id)
                log.info("live session %s ended: %s", self.id, reason)
        except Exception:  # noqa: BLE001 - Redis away: the lease runs out and the sweep ends the record
            log.warning("live session %s: could not record its end", self.id, exc_info=True)
        self._release(svc)

    def expired(self) -> LiveError | None:
        if time.monotonic() - self.opened_at > self.live.max_session_s:
            return LiveError("session_too_long", f"a live session lasts at most {self.live.max_session_s:g} s",
                             close=CLOSE_TOO_LONG)
        return None

    def busy(self) -> bool:
        """Whether text is still being spoken (a session that listens is not idle)."""
        return bool(self.sentences) or self.finishing

    def tell(self, error: LiveError) -> None:
        """A refused message: the client is told, and the session goes on."""
        self._emit(Event("error", {"code": error.code, "message": error.message, "field": error.field}))

    def fail(self, error: LiveError) -> None:
        """End the session with an error the client is told of, then close."""
        self.error = error
        self.tell(error)
        self.outbox.close(error.close or CLOSE_ERROR, error.code)

    # -- sentences -----------------------------------------------------------------------------
    def _cut(self, length: int) -> None:
        """The first `length` characters of the pending text become a sentence."""
        if length <= 0:
            return
        text, self.pending = self.pending[:length], self.pending[length:]
        start = self.pending_at
        self.pending_at += length
        if not frontend.speakable(text):
            return  # punctuation or emoji alone: nothing to say, and no job for it
        sentence = Sentence(self.count, start, start + length, text, cut_at=time.monotonic())
        self.count += 1
        self.sentences.append(sentence)
        self._submit_ahead()
        self.wake.set()

    def _arm_pause(self) -> None:
        if self.pause_timer is not None:
            self.pause_timer.kill(block=False)
        if self.pending.strip():
            self.pause_timer = gevent.spawn_later(self.live.pause_ms / 1000, self._in_app, self._paused)

    def _paused(self) -> None:
        """The text paused mid-sentence: speak up to its last clause mark."""
        self.pause_timer = None
        if not self.ended:
            self._cut(plan.last_clause_end(self.pending))

    def _in_flight(self) -> list[Sentence]:
        """The sentences with a job whose audio has not all been sent."""
        return [sentence for sentence in self.sentences if sentence.job_id]

    def _ahead_s(self) -> float:
        """Seconds of audio made or being made ahead of the listener: what it has yet to play of
        what was sent, and what the sentences submitted and not yet sent will make."""
        coming = sum(sentence.expected_s(self.options.speed) for sentence in self.sentences if sentence.submitting
                     and sentence.job_id is not None)
        return max(0.0, self.play_end - time.monotonic()) + coming

    def _submit_ahead(self) -> None:
        """Give jobs to the next sentences while less than VOXQ_LIVE_AHEAD_S of audio is made
        ahead of the listener: paced by what it hears, not by how fast the workers speak, so that
        every session's next sentence is near the front of the queue, and a barge-in wastes little."""
        for sentence in list(self.sentences):
            if sentence.submitting:
                continue
            if self._ahead_s() >= self.live.ahead_s:
                return
            sentence.submitting = True
            try:
                sentence.job_id = self._submit(sentence)
            except LiveError as exc:
                if sentence in self.sentences:
                    self.sentences.remove(sentence)
                if exc.close:
                    self.fail(exc)
                    return
                self._emit(Event("error", {"code": exc.code, "message": exc.message, "field": exc.field,
                                           "sentence": sentence.index}))
                continue
            finally:
                sentence.settled.set()
            if sentence not in self.sentences:  # canceled (or the session ended) while it was submitted
                self._cancel_job(sentence.job_id)

    def _submit(self, sentence: Sentence) -> str:
        problem = plan.check_text(sentence.text, self.settings.limits.max_chars)
        if problem:
            raise LiveError(*problem)
        job = JobRequest(**self.options.model_dump(), text=sentence.text, lexicons=self.names,
                         priority=self.request.priority, metadata={"live_session": self.id, "sentence": sentence.index})
        try:
            auth.charge(self.owner, len(sentence.text))
            # A listener with (almost) nothing left to play is waiting: first-chunk priority. One
            # still playing audio has time: after those, before long jobs' continuation chunks.
            waiting = self._ahead_s() < URGENT_S
            record = submission.submit(job, self.owner, via=self.via, live_session=self.id,
                                       message_priority=tasks.FIRST_CHUNK_PRIORITY if waiting
                                       else tasks.LOOKAHEAD_PRIORITY)
        except ApiError as exc:
            # Over the day's characters, or the queue away: the session cannot go on.
            raise LiveError.of(exc, CLOSE_TOO_MANY if exc.status == 429 else CLOSE_ERROR) from None
        if self.request.save:
            self.saved.append(record.id)
        return record.id

    def _promote(self, record) -> None:
        try:
            if submission.promote(record):
                log.info("live session %s: sentence job %s promoted, its listener is about to run dry",
                         self.id, record.id)
        except Exception:  # noqa: BLE001 - the queue away: the copy already queued still runs it
            log.warning("live session %s: could not promote job %s", self.id, record.id, exc_info=True)

    def _cancel_job(self, job_id: str) -> None:
        try:
            submission.cancel(job_id)
        except Exception:  # noqa: BLE001 - a job that cannot be canceled ends by itself
            log.warning("live session %s: could not cancel job %s", self.id, job_id, exc_info=True)

    # -- what the session sends ----------------------------------------------------------------
    def _emit(self, event: Event, generation: int | None = None) -> None:
        """Queue an event's frames; audio of `generation` is dropped if a cancel came meanwhile."""
        valid = None if generation is None else (lambda: generation == self.generation)
        if not self.outbox.put(self.face.render(event), valid):
            self.fail(self._slow_reader())

    def _slow_reader(self) -> LiveError:
        return LiveError("slow_reader", f"the client took no audio for {self.live.send_timeout_s:g} s with "
                         f"{self.live.buffer_bytes} bytes waiting for it", close=CLOSE_SLOW_READER)

    def _in_app(self, work, *args) -> None:
        with self.app.app_context():
            work(*args)

    def _send(self) -> None:
        """The sentences' audio, one after another, as the cluster makes it."""
        svc = services.get()
        while not self.ended:
            if not self.sentences:
                if self.finishing:
                    self._finished()
                    return
                self.wake.clear()
                self.wake.wait()
                continue
            sentence = self.sentences[0]
            generation = self.generation
            self._submit_ahead()
            if not sentence.submitting:
                # Not due yet: the listener has more than VOXQ_LIVE_AHEAD_S to hear before it.
                self.wake.clear()
                self.wake.wait(max(0.01, self._ahead_s() - self.live.ahead_s + 0.01))
                continue
            sentence.settled.wait()
            if sentence.job_id is None or generation != self.generation:
                if self.sentences and self.sentences[0] is sentence:
                    self.sentences.popleft()
                continue  # refused (the error was sent) or canceled meanwhile
            self._send_sentence(svc, sentence, generation)
            if generation == self.generation and self.sentences and self.sentences[0] is sentence:
                self.sentences.popleft()

    def _send_sentence(self, svc, sentence: Sentence, generation: int) -> None:
        record = svc.store.jobs.get(sentence.job_id)
        if record is None:
            return
        # Submitted while the listener had time, at the lower priority: if it still waits in the
        # queue when the listener is about to run dry, it goes to the front (earliest deadline first,
        # as near as the queue's priorities allow).
        due = self.play_end - URGENT_S - time.monotonic()
        promoter = gevent.spawn_later(max(0.0, due), self._in_app, self._promote, record)
        try:
            record, rate, _ = first_audio(record, self.settings.limits.speech_timeout_s)
        finally:
            promoter.kill(block=False)
        if generation != self.generation:
            return
        started = False
        try:
            for block in audio_chunks(record, with_header=False):
                if generation != self.generation:
                    return
                if not started:
                    started = True
                    now = time.monotonic()
                    metrics.LIVE_FIRST_AUDIO.observe(now - sentence.cut_at)
                    # The listener plays it once what came before has played (or now, if that has).
                    playing_from = max(now, self.play_end)
                    if self.options.format == "wav" and not self.header_sent:
                        self.header_sent = True
                        self._emit(Event("audio", audio=wav_stream_header(rate or record.options.sample_rate
                                                                          or self.options.sample_rate or 16000)))
                    self._emit(Event("sentence_started", self._sentence(sentence)))
                self._emit(Event("audio", audio=block), generation)
        except StreamAborted:
            pass
        if generation != self.generation:
            return
        record = svc.store.jobs.get(sentence.job_id)
        if record is None or record.status != "succeeded":
            error = record.error if record is not None else None
            self._emit(Event("error", {"code": error.code if error else "job_lost",
                                       "message": error.message if error else "the sentence's job is gone",
                                       "field": None, "sentence": sentence.index}))
            if sentence.job_id in self.saved:
                self.saved.remove(sentence.job_id)
            return
        if not started:  # a sentence whose audio came whole from its file (say, a cache hit)
            self._emit(Event("sentence_started", self._sentence(sentence)))
        duration_ms = record.result.duration_s * 1000 if record.result else 0.0
        self.play_end = (playing_from if started else max(time.monotonic(), self.play_end)) + duration_ms / 1000
        ended = dict(self._sentence(sentence), audio_end_ms=round(self.audio_ms + duration_ms, 1))
        if self.options.marks:
            ended["marks"] = self._marks(svc, sentence, record)
        self.audio_ms += duration_ms
        self._emit(Event("sentence_ended", ended))

    def _sentence(self, sentence: Sentence) -> dict:
        """What every event about a sentence says: which, where in the text sent, where in the audio,
        and its job (GET /v1/jobs/{id} shows it)."""
        return {"index": sentence.index, "start": sentence.start, "end": sentence.end, "text": sentence.text,
                "job_id": sentence.job_id, "audio_start_ms": round(self.audio_ms, 1)}

    def _marks(self, svc, sentence: Sentence, record) -> list[dict]:
        """The sentence's timing marks, as offsets into the session's text and its audio."""
        try:
            found = json.loads(svc.storage.marks_path(record.id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        shifted = []
        for entry in found:
            entry = dict(entry, start_ms=round(entry["start_ms"] + self.audio_ms, 1),
                         end_ms=round(entry["end_ms"] + self.audio_ms, 1))
            if entry.get("start") is not None:
                entry["start"] += sentence.start
                entry["end"] += sentence.start
            shifted.append(entry)
        return shifted

    def _finished(self) -> None:
        svc = services.get()
        summary = {"session_id": self.id, "sentences": self.count, "characters": self.received,
                   "audio_ms": round(self.audio_ms, 1)}
        self._save_text()
        result = self._save_audio(svc) if self.request.save else None
        if svc.store.jobs.succeed(self.id, result.model_dump() if result else None):
            if result is not None:
                summary["audio_url"] = f"/v1/jobs/{self.id}/audio"
        self.ended = True
        self._release(svc)
        log.info("live session %s finished: %d sentences, %.1f s audio", self.id, self.count, self.audio_ms / 1000)
        self._emit(Event("finished", summary))
        self.done.set()
        if self.own_outbox:
            self.outbox.close(CLOSE_NORMAL, "finished")

    def _release(self, svc) -> None:
        """Once, when the session ends either way: its places (the tenant's and this process's)
        and its own lexicon go."""
        if self.released:
            return
        self.released = True
        PROCESS.remove(self)
        metrics.LIVE_SESSIONS.dec()
        try:
            svc.store.sessions.close(self.id, self.owner)
            if self.request.pronunciations:
                svc.store.lexicons.delete(self.owner, self.lexicon_name)
        except Exception:  # noqa: BLE001 - Redis away: the lease runs out; the lexicon is named for the session
            log.warning("live session %s: could not let go of its place", self.id, exc_info=True)

    def _save_text(self) -> None:
        """The session's text, for its record (kept as long as any job's)."""
        services.get().store.jobs.set_text(self.id, "".join(self.text))

    def _save_audio(self, svc):
        """The session's audio as one file: its sentences' files laid end to end (each format here
        plays so: PCM and G.711 samples, MP3 frames, chained Ogg streams), a WAV's PCM under one header."""
        from shared.jobs import AudioResult

        storage, fmt = svc.storage, self.options.format
        records = [r for r in svc.store.jobs.get_many(self.saved) if r.status == "succeeded" and r.result]
        if not records:
            return None
        path = storage.audio_path(self.id, fmt)
        temp = storage.temp_path(path)
        rate = records[0].result.sample_rate
        if fmt == "wav":
            with wave.open(str(temp), "wb") as out:
                out.setnchannels(1)
                out.setsampwidth(2)
                out.setframerate(rate)
                for record in records:
                    with wave.open(str(storage.audio_path(record.id, fmt)), "rb") as part:
                        out.writeframes(part.readframes(part.getnframes()))
        else:
            with open(temp, "wb") as out:
                for record in records:
                    out.write(storage.audio_path(record.id, fmt).read_bytes())
        # Hashed a block at a time: an hour's session is hundreds of MB, never held in the API.
        with open(temp, "rb") as saved:
            digest = hashlib.file_digest(saved, "sha256")
        size = temp.stat().st_size
        storage.publish(temp, path)
        return AudioResult(format=fmt, sample_rate=rate, duration_s=round(sum(r.result.duration_s for r in records), 3),
                           bytes=size, sha256=digest.hexdigest())
