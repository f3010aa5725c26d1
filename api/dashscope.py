"""DashScope's speech-synthesis WebSocket protocol at /api-ws/v1/inference: Aliyun's `dashscope`
SDK runs against voxq with only its URL changed (README, "Migrating from DashScope").

Each task is a live session (api/live_session.py); the tasks of a connection run one after another
and share its one outbox, so the SDK's object pool can reuse a connection, or leave it idle.
- CosyVoice (`dashscope.audio.tts_v2.SpeechSynthesizer`, streaming "duplex"): run-task, then
  continue-task with text or `flush`, then finish-task (with the `cancel` directive: a barge-in,
  then the finish). Sentences are reported as Aliyun's result-generated sentence-begin and
  sentence-end, with their words when word timestamps are asked for.
- Sambert (`dashscope.audio.tts.SpeechSynthesizer.call`, streaming "out"): the text comes in the
  run-task, which is finished once it is spoken; every sentence is a result-generated with its
  begin and end times (and words), and task-finished's payload is `{"output": null, "usage": ...}`.

What maps: model and voice names, through the table in api/dashscope_voices.json (extended by
VOXQ_DASHSCOPE_VOICES_FILE), to a voxq voice, emotion and speed factor; format and sample_rate
(pcm, wav, mp3, opus; "Default"/0 is mp3 at 22050 Hz, what the SDK assumes; Sambert's default is
wav at the model's rate); volume 0-100 (50 is voxq's 1.0); rate and pitch; hot_fix.pronunciation,
as the session's own lexicon; word_timestamp_enabled, as voxq's marks; errors, as task-failed with
DashScope's codes and the voxq code in the message. voxq's own `lexicons` may be named in the
parameters (the SDK's additional_params).

What does not: instruction, language_hints, seed, type, bit_rate, enable_markdown_filter,
phoneme timestamps and the workspace are accepted and ignored: they tune how a model speaks, which
voxq's engine cannot. What would change *what* is said is refused rather than said otherwise: SSML
text and hot_fix.replace (a voxq lexicon's alias entries do that). No sentence-synthesis events;
usage.characters counts characters as voxq does (Aliyun bills a Chinese character as two).
"""
from __future__ import annotations

import collections
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from simple_websocket import ConnectionClosed

from api import auth, services, validation
from api.errors import validation_error
from api.live import TICK_S, sock
from api.live_session import (CLOSE_IDLE, CLOSE_NORMAL, Event, LiveError, LiveRequest, LiveSession, Outbox,
                              authenticate, parse_request)
from shared.options import SampleRate

bp = Blueprint("dashscope", __name__)
log = logging.getLogger(__name__)

PATH = "/api-ws/v1/inference"
BUILT_IN_VOICES = Path(__file__).with_name("dashscope_voices.json")

FORMATS = ("pcm", "wav", "mp3", "opus")
# AudioFormat.DEFAULT goes on the wire as "Default"/0; the SDK itself takes it for mp3 at 22050 Hz.
DEFAULT_FORMAT = "mp3"
DEFAULT_RATE = 22050
OPUS_DEFAULT_RATE = 24000  # 22050 is not a rate Opus has
# DashScope's bound on one message's text. The SDK escapes each Chinese character to six ASCII
# characters, so a frame may be six times as long as its text, and a little more.
MAX_TEXT_CHARS = 20_000
MAX_FRAME_CHARS = 6 * MAX_TEXT_CHARS + 8192
# RFC 6455: what Aliyun closes with for a frame it cannot read, and for one too large.
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009

# voxq's error codes -> DashScope's. Of the rest, those the service caused are InternalError and
# those the request caused are InvalidParameter; the message keeps voxq's code either way.
CODES = {"unauthorized": "InvalidApiKey", "rate_limited": "Throttling.RateQuota", "too_many_sessions": "Throttling",
         "chars_per_day_exceeded": "Throttling.AllocationQuota", "idle_timeout": "RequestTimeOut",
         "timeout": "ResponseTimeout"}
SERVICE_FAULTS = ("engine_error", "worker_lost", "storage_error", "session_lost", "text_expired", "job_lost",
                  "unavailable", "invalid_voices_file")


# -- the name table --------------------------------------------------------------------------------
class Mapping(BaseModel):
    """What one DashScope voice (or Sambert model) speaks as in voxq."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    voice: str | None = Field(None, max_length=64, description="a voxq voice; None is the engine's default")
    emotion: str = Field("neutral", max_length=32)
    speed: float = Field(1.0, ge=0.5, le=2.0, description="a factor on the caller's rate")
    sample_rate: SampleRate | None = Field(None, description="a Sambert model's default rate")


class _CosyVoiceNames(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[str] = []
    voices: dict[str, Mapping | None] = {}


class _TableFile(BaseModel):
    """The shape of api/dashscope_voices.json and of the operator's file; null removes an entry."""

    model_config = ConfigDict(extra="forbid")

    about: str | None = None
    cosyvoice: _CosyVoiceNames = _CosyVoiceNames()
    sambert: dict[str, Mapping | None] = {}


@dataclass(frozen=True)
class VoiceTable:
    models: tuple[str, ...]  # CosyVoice models: each speaks any voice of `voices`
    voices: dict[str, Mapping]
    sambert: dict[str, Mapping]  # Sambert models: the model is the voice

    @classmethod
    def read(cls, path: Path, base: "VoiceTable | None" = None) -> "VoiceTable":
        """The table of a file, on top of `base`; OSError or ValueError when it cannot be read."""
        found = _TableFile.model_validate_json(path.read_bytes())
        models = list(base.models) if base else []
        models += [m for m in found.cosyvoice.models if m not in models]
        voices = {**(base.voices if base else {}), **found.cosyvoice.voices}
        sambert = {**(base.sambert if base else {}), **found.sambert}
        return cls(tuple(models), {k: v for k, v in voices.items() if v is not None},
                   {k: v for k, v in sambert.items() if v is not None})

    def find(self, model: str, voice) -> tuple[Mapping, bool]:
        """The voxq voice of a DashScope model and voice, and whether the model is Sambert's."""
        if model in self.sambert:
            return self.sambert[model], True
        if model not in self.models:
            raise LiveError("unknown_model", f"model {model!r} is not one voxq serves; it serves "
                            f"{', '.join(self.models)} (with a voice) and the Sambert models "
                            f"{', '.join(sorted(self.sambert))}. {_how_to_add('model', model)}", "model")
        if not isinstance(voice, str):
            raise LiveError("invalid_request", f"parameters.voice must name a voice of {model}; the DashScope voices "
                            f"voxq knows are {', '.join(sorted(self.voices))}", "voice")
        if voice in self.voices:
            return self.voices[voice], False
        raise LiveError("unknown_voice", f"voice {voice!r} has no voxq voice; the DashScope voices voxq knows are "
                        f"{', '.join(sorted(self.voices))}. {_how_to_add('voice', voice)}", "voice")


def _how_to_add(kind: str, name) -> str:
    """How an operator maps a name, and what voxq has to map it to."""
    entry = {"voice": None, "emotion": "neutral"}
    if kind == "voice":
        example = json.dumps({"cosyvoice": {"voices": {name: entry}}}, ensure_ascii=False)
    else:
        example = (f"{json.dumps({'cosyvoice': {'models': [name]}}, ensure_ascii=False)} for a CosyVoice model, "
                   f"{json.dumps({'sambert': {name: entry}}, ensure_ascii=False)} for a Sambert one")
    caps = validation.engine_caps()
    voices = sorted(validation.known_voices(caps))
    return (f"To add one, map it in the JSON file that VOXQ_DASHSCOPE_VOICES_FILE names, e.g. {example}. "
            f"voxq's voices: {', '.join(voices) or 'those of its engine'} (null is the engine's default); "
            f"its emotions: {', '.join(validation.known_emotions(caps))}.")


_tables: dict[Path | None, VoiceTable] = {}


def voice_table() -> VoiceTable:
    """This process's table: the built-in one and the operator's file, read once, on first use."""
    extra = services.get().settings.live.dashscope_voices_file
    if extra not in _tables:
        table = VoiceTable.read(BUILT_IN_VOICES)
        if extra is not None:
            try:
                table = VoiceTable.read(extra, table)
            except (OSError, ValueError) as exc:
                # Not kept: the next task reads the file again, so a fix needs no restart.
                log.error("VOXQ_DASHSCOPE_VOICES_FILE %s: %s", extra, exc)
                message = validation_error(exc).message if isinstance(exc, ValidationError) else str(exc)
                raise LiveError("invalid_voices_file", f"the service's DashScope voice table "
                                f"(VOXQ_DASHSCOPE_VOICES_FILE) cannot be read: {message}") from None
        _tables[extra] = table
    return _tables[extra]


# -- a task's request ------------------------------------------------------------------------------
def _number(params: dict, name: str, default: float, low: float, high: float) -> float:
    value = params.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise LiveError("invalid_request", f"parameters.{name} must be a number from {low:g} to {high:g}; "
                        f"got {value!r}", name)
    return float(value)


def _pronunciations(hot_fix) -> dict[str, str] | None:
    """hot_fix.pronunciation ([{"草地": "cao3 di4"}, ...]) as one word -> reading mapping."""
    if hot_fix is None:
        return None
    if not isinstance(hot_fix, dict):
        raise LiveError("invalid_request", "parameters.hot_fix must be an object", "hot_fix")
    if hot_fix.get("replace"):
        raise LiveError("invalid_request", "hot_fix.replace is not supported: voxq does not rewrite text here. A "
                        "voxq lexicon's alias entries do (PUT /v1/lexicons/{name}), named in parameters.lexicons",
                        "hot_fix.replace")
    found = {}
    items = hot_fix.get("pronunciation") or []
    if not isinstance(items, list):
        raise LiveError("invalid_request", "hot_fix.pronunciation must be a list of {word: pinyin}",
                        "hot_fix.pronunciation")
    for item in items:
        if not isinstance(item, dict) or not all(isinstance(v, str) for v in item.values()):
            raise LiveError("invalid_request", f"hot_fix.pronunciation: each entry is {{word: \"pin1 yin1\"}}; got "
                            f"{item!r}", "hot_fix.pronunciation")
        found.update(item)
    return found or None


def build_request(task_id: str, payload: dict) -> tuple[LiveRequest, bool]:
    """A run-task's session options, and whether its text may be SSML (to be refused, not read out
    tags and all); LiveError naming the DashScope parameter when they are refused."""
    params = payload.get("parameters") or {}
    if not isinstance(params, dict):
        raise LiveError("invalid_request", "payload.parameters must be an object", "parameters")
    model, voice = payload.get("model"), params.get("voice")
    if not isinstance(model, str):
        raise LiveError("invalid_request", "payload.model must name a DashScope model", "model")
    mapping, sambert = voice_table().find(model, voice)
    if (params.get("text_type") or "PlainText") != "PlainText":
        raise LiveError("invalid_request", "SSML text is not supported: text_type must be PlainText", "text_type")
    fmt = params.get("format") or ("wav" if sambert else "Default")
    rate = params.get("sample_rate") or 0
    if fmt == "Default":
        fmt = DEFAULT_FORMAT
    if fmt not in FORMATS:
        raise LiveError("invalid_request", f"format must be one of {', '.join(FORMATS)} (or Default: mp3 at "
                        f"{DEFAULT_RATE} Hz); got {fmt!r}", "format")
    if not rate:
        rate = mapping.sample_rate or (OPUS_DEFAULT_RATE if fmt == "opus" else DEFAULT_RATE)
    speed = _number(params, "rate", 1.0, 0.5, 2.0) * mapping.speed
    body = {
        "voice": mapping.voice,
        "emotion": mapping.emotion,
        "speed": min(2.0, max(0.5, speed)),
        "pitch": _number(params, "pitch", 1.0, 0.5, 2.0),
        "volume": _number(params, "volume", 50, 0, 100) / 50,
        "format": fmt,
        "sample_rate": rate,
        "marks": bool(params.get("word_timestamp_enabled")),
        "pronunciations": _pronunciations(params.get("hot_fix")),
        "lexicons": params.get("lexicons"),
        "metadata": {"dashscope": {"task_id": task_id, "model": model, "voice": None if sambert else voice}},
    }
    return parse_request({k: v for k, v in body.items() if v is not None}), params.get("enable_ssml") is True


# -- frames ----------------------------------------------------------------------------------------
def _frame(task_id: str, event: str, payload: dict, **attributes) -> str:
    return json.dumps({"header": {"task_id": task_id, "event": event, "attributes": attributes}, "payload": payload},
                      ensure_ascii=False)


def task_failed(task_id: str, error: LiveError) -> str:
    code = CODES.get(error.code) or ("InternalError" if error.code in SERVICE_FAULTS else "InvalidParameter")
    return json.dumps({"header": {"task_id": task_id, "event": "task-failed", "error_code": code,
                                  "error_message": f"{error.message} (voxq: {error.code})", "attributes": {}},
                       "payload": {}}, ensure_ascii=False)


def _words(sentence: dict, with_indexes: bool) -> list[dict]:
    """A sentence's character marks as Aliyun's words: times in the task's audio, indexes in the
    sentence. The characters read for one piece of text (二零二三 for 2023) are one word."""
    words, last, offset = [], None, sentence["start"]
    for mark in sentence.get("marks") or []:
        if mark["type"] != "char":
            continue
        start, end = mark.get("start"), mark.get("end")
        if start is not None and (start, end) == last:
            words[-1]["end_time"] = round(mark["end_ms"])
            continue
        last = (start, end)
        word = {"text": mark["value"] if start is None else sentence["text"][start - offset:end - offset]}
        if with_indexes and start is not None:
            word.update(begin_index=start - offset, end_index=end - offset)
        word.update(begin_time=round(mark["start_ms"]), end_time=round(mark["end_ms"]))
        words.append(word)
    return words


class TaskFace:
    """One task's frames: DashScope's JSON events under its task ID, its audio as binary frames.
    Nothing of the task goes out after its task-failed or task-finished."""

    def __init__(self, task_id: str, sambert: bool):
        self.task_id = task_id
        self.sambert = sambert
        self.over = False
        self.failure: LiveError | None = None
        self.session_id = ""
        self.last_index = 0

    def render(self, event: Event) -> list[str | bytes]:
        if self.over:
            return []
        data = event.data
        if event.kind == "audio":
            return [event.audio] if event.audio else []  # the SDK divides by a frame's length
        if event.kind == "started":
            self.session_id = data["session_id"]
            return [_frame(self.task_id, "task-started", {}, voxq_session_id=self.session_id)]
        if event.kind == "sentence_started" and not self.sambert:
            return [self._sentence("sentence-begin", data, [], None)]
        if event.kind == "sentence_ended":
            self.last_index = data["index"]
            if self.sambert:
                sentence = {"begin_time": round(data["audio_start_ms"]), "end_time": round(data["audio_end_ms"]),
                            "words": _words(data, with_indexes=False)}
                return [self._result({"output": {"sentence": sentence}, "usage": {"characters": data["end"]}}, data)]
            return [self._sentence("sentence-end", data, _words(data, with_indexes=True), {"characters": data["end"]})]
        if event.kind == "finished":
            self.over = True
            usage = {"characters": data["characters"]}
            # Sambert's SDK reads an output as a sentence: a null one is how the task's end is told.
            output = None if self.sambert else {"sentence": {"index": self.last_index, "words": []}}
            return [_frame(self.task_id, "task-finished", {"output": output, "usage": usage},
                           voxq_session_id=self.session_id)]
        if event.kind == "error":
            self.over = True
            self.failure = LiveError(data["code"], data["message"], data.get("field"))
            return [task_failed(self.task_id, self.failure)]
        return []  # canceled: the finish that follows a cancel directive answers it

    def _sentence(self, kind: str, data: dict, words: list[dict], usage: dict | None) -> str:
        payload = {"output": {"type": kind, "original_text": data["text"],
                              "sentence": {"index": data["index"], "words": words}}}
        if usage is not None:
            payload["usage"] = usage
        return self._result(payload, data)

    def _result(self, payload: dict, sentence: dict) -> str:
        # Beyond Aliyun's header: voxq's records of the task and of the sentence (GET /v1/jobs/{id}).
        return _frame(self.task_id, "result-generated", payload, voxq_session_id=self.session_id,
                      voxq_job_id=sentence["job_id"])


# -- a connection ----------------------------------------------------------------------------------
@dataclass
class Task:
    id: str
    session: LiveSession
    face: TaskFace
    ssml: bool  # enable_ssml: a text that is SSML is refused, not read out tags and all

    def feed(self, data) -> None:
        data = data if isinstance(data, dict) else {}
        text = data.get("text")
        if text is not None:
            if not isinstance(text, str):
                raise LiveError("invalid_request", "input.text must be a string", "text")
            if len(text) > MAX_TEXT_CHARS:
                raise LiveError("invalid_request", f"input.text is at most {MAX_TEXT_CHARS} characters a message",
                                "text")
            if self.ssml and text.lstrip().startswith("<speak"):
                raise LiveError("invalid_request", "SSML text is not supported here; voxq's own API reads SSML "
                                "(text_type ssml)", "text")
            self.session.feed(text)
        if data.get("flush") is True:
            self.session.flush()

    def finish(self, data) -> None:
        if isinstance(data, dict) and data.get("directive") == "cancel":
            self.session.cancel()
        self.session.finish()

    def fail(self, error: LiveError) -> None:
        """A refused message ends the task (DashScope has no error that lets a task go on); one that
        ends the session closes the connection too."""
        if error.close:
            self.session.fail(error)
        else:
            self.session.tell(error)


class Connection:
    """One client's WebSocket: its tasks, one at a time, and the outbox they share."""

    def __init__(self, ws):
        self.ws = ws
        self.live = services.get().settings.live
        self.outbox = Outbox(ws, self.live.buffer_bytes, self.live.send_timeout_s)
        self.task: Task | None = None
        self.ended = collections.deque(maxlen=16)  # recent tasks' IDs: their late messages are dropped
        self.quiet_since = time.monotonic()
        # The SDK shows no handshake refusal (only a connect timeout): a bad key is told to its
        # run-task instead. Each task counts against the key's rate as it opens.
        try:
            self.owner, self.refusal = authenticate(auth.bearer_key()), None
        except LiveError as exc:
            self.owner, self.refusal = None, exc

    def run(self) -> None:
        while self.outbox.closing is None and not self.outbox.done.is_set():
            self._reap()
            if self._idle():
                break
            try:
                body = self._receive()
                if body is None:
                    continue
                self.quiet_since = time.monotonic()
                self._reap()
                self._handle(body)
            except LiveError as exc:  # a frame that is not DashScope's: the connection ends
                if self.task is not None:
                    self.task.session.fail(exc)
                else:
                    self.outbox.close(exc.close or CLOSE_INVALID_DATA, exc.code)

    def end(self) -> None:
        if self.task is not None:
            self.task.session.close()
            self.task = None
        self.outbox.close(CLOSE_NORMAL, "")
        self.outbox.wait(self.live.send_timeout_s + 5)

    def _idle(self) -> bool:
        """Whether the connection ends for time: a task too long or silent, or no task for long."""
        quiet_s = time.monotonic() - self.quiet_since
        if self.task is None:
            if quiet_s > self.live.idle_timeout_s:
                self.outbox.close(CLOSE_IDLE, "idle_timeout")
                return True
            return False
        problem = self.task.session.expired()
        if problem is None and quiet_s > self.live.idle_timeout_s and not self.task.session.busy():
            problem = LiveError("idle_timeout", f"no message for {self.live.idle_timeout_s:g} s", close=CLOSE_IDLE)
        if problem is not None:
            self.task.session.fail(problem)
            return True
        return False

    def _receive(self) -> dict | None:
        # Not api/live.py's receive: its bound is for voxq's deltas, and a DashScope message may
        # carry 20,000 characters, escaped six times over.
        message = self.ws.receive(timeout=TICK_S)
        if message is None:
            return None
        if isinstance(message, bytes):
            raise LiveError("invalid_request", "messages are JSON text frames", close=CLOSE_INVALID_DATA)
        if len(message) > MAX_FRAME_CHARS:
            raise LiveError("invalid_request", f"a message is at most {MAX_FRAME_CHARS} characters",
                            close=CLOSE_TOO_BIG)
        try:
            body = json.loads(message)
        except ValueError:
            raise LiveError("invalid_request", "a message is not valid JSON", close=CLOSE_INVALID_DATA) from None
        if not isinstance(body, dict) or not isinstance(body.get("header"), dict):
            raise LiveError("invalid_request", "a message is {\"header\": {...}, \"payload\": {...}}",
                            close=CLOSE_INVALID_DATA)
        return body

    def _handle(self, body: dict) -> None:
        header = body["header"]
        payload = body.get("payload") if isinstance(body.get("payload"), dict) else {}
        action, task_id = header.get("action"), header.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            self._refuse("", LiveError("invalid_request", "header.task_id is required", "task_id"))
            return
        if action == "run-task":
            self._start(task_id, header.get("streaming"), payload)
            return
        if action not in ("continue-task", "finish-task"):
            self._refuse(task_id, LiveError("invalid_request", "header.action must be run-task, continue-task or "
                                            f"finish-task; got {action!r}", "action"))
            return
        task = self.task
        if task is None or task.id != task_id:
            if task_id not in self.ended:  # a task that ended (say, failed) may still hear from its client
                self._refuse(task_id, LiveError("invalid_request", f"no task {task_id} runs on this connection; "
                                                "send run-task first", "task_id"))
            return
        try:
            if action == "continue-task":
                task.feed(payload.get("input"))
            else:
                task.finish(payload.get("input"))
        except LiveError as exc:
            task.fail(exc)
        self._reap()

    def _start(self, task_id: str, streaming, payload: dict) -> None:
        if self.task is not None:
            self._refuse(task_id, LiveError("invalid_request", f"task {self.task.id} still runs on this connection; "
                                            "one task at a time", "task_id"))
            return
        if streaming not in ("duplex", "out"):
            self._refuse(task_id, LiveError("invalid_request", "header.streaming must be duplex (CosyVoice) or out "
                                            f"(Sambert); got {streaming!r}", "streaming"))
            return
        try:
            if self.refusal is not None:
                raise self.refusal
            request, ssml = build_request(task_id, payload)
            face = TaskFace(task_id, sambert=streaming == "out")
            session = LiveSession(self.owner, request, face, self.ws, via="dashscope", outbox=self.outbox)
            session.open()
        except LiveError as exc:
            self._refuse(task_id, exc)
            return
        except Exception:  # noqa: BLE001 - Redis away, say: the SDK would wait for a task-started for ever
            log.exception("dashscope: task %s could not start", task_id)
            self._refuse(task_id, LiveError("unavailable", "the service could not start the task; retry shortly"))
            return
        self.task = Task(task_id, session, face, ssml)
        text = (payload.get("input") or {}).get("text") if isinstance(payload.get("input"), dict) else None
        try:
            if text is not None:
                self.task.feed({"text": text})
            if streaming == "out":  # Sambert: the run-task is the whole request
                session.finish()
        except LiveError as exc:
            self.task.fail(exc)
        self._reap()

    def _refuse(self, task_id: str, error: LiveError) -> None:
        """A task that cannot start (or a message for none): its task-failed; the connection stays."""
        self.outbox.put([task_failed(task_id, error)])
        self.ended.append(task_id)

    def _reap(self) -> None:
        """Let go of the task once its task-finished or task-failed is queued."""
        task = self.task
        if task is None or not (task.face.over or task.session.done.is_set()):
            return
        if task.face.failure is not None and task.session.error is None:
            task.session.error = task.face.failure  # the session's record ends failed, with why
        task.session.close("its task ended")
        self.ended.append(task.id)
        self.task = None
        self.quiet_since = time.monotonic()


def inference(ws) -> None:
    connection = Connection(ws)
    try:
        connection.run()
    except ConnectionClosed:
        pass
    finally:
        connection.end()


# Aliyun's examples write the URL with a trailing slash, the SDK's default without: both are served.
sock.route(PATH, bp=bp, endpoint="inference")(inference)
sock.route(PATH + "/", bp=bp, endpoint="inference_slash")(inference)
