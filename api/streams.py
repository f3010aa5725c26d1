"""Audio as it is made: GET /v1/jobs/{id}/stream sends a job's chunks in order as they land.

A stream reads the chunk files the workers publish (by atomic rename) on shared storage, and asks
Redis, a few times a second, how far the job has got; it holds one file block (64 KB) at a time.
The API serves with gevent workers (api/gunicorn_conf.py), so a stream waiting for a chunk is a
sleeping greenlet, not a held worker process or thread.

- wav: a streaming header (sizes set to the largest value, as for a live source), then 16-bit PCM;
  pcm: the PCM alone. Both are exactly the bytes of the finished file's audio (with loudness off,
  or a job of one chunk; see below).
- mp3, ogg, opus, aac: each chunk encoded on its own, laid end to end: chained Ogg streams, MP3
  streams or ADTS (AAC) streams back to back. flac and m4a cannot be streamed (their headers need
  the length): 409.
- mulaw-raw, alaw-raw: each chunk's G.711 bytes (G.711 codes each sample alone, so they join
  seamlessly); mulaw, alaw: a WAV header of unknown length that the worker of chunk 0 wrote
  (this process has no audio stack to make one), then the same bytes.
- With loudness on, each chunk plays at the gain its own measurement gives; the finished file has
  one gain measured over the whole job (worker/loudness.py). A one-chunk job's stream is its file.
- A client that connects late gets everything from the start; one that connects after the job
  succeeded gets the finished file.
- A job that fails or is canceled mid-stream ends the stream without its last (empty) chunk of
  the chunked transfer encoding: clients see an incomplete body (curl: exit 18, requests:
  ChunkedEncodingError), and GET /v1/jobs/{id} says why.
"""
from __future__ import annotations

import io
import time
import wave
from typing import Iterator

from flask import Blueprint, Response, send_file, stream_with_context

from api import metrics, services
from api.errors import ApiError
from api.ownership import owned_job
from shared.chunk_files import ChunkFiles
from shared.jobs import JobRecord
from shared.options import CONTENT_TYPES, LIVE_KINDS, STREAM_HEADERS, STREAM_PIECES

bp = Blueprint("streams", __name__, url_prefix="/v1/jobs")

BLOCK = 64 * 1024
POLL_S = 0.05
# How long a read of the piece stream waits for the next piece before it looks at the files.
PIECE_WAIT_MS = 100
STREAMABLE = tuple(STREAM_PIECES)
# A stream that has seen no progress for this long gives up (a stuck cluster must not pin it).
IDLE_TIMEOUT_S = 600.0


class StreamAborted(Exception):
    """The job ended without audio to finish the stream: abort it so the client can tell."""


def wav_stream_header(rate: int) -> bytes:
    """A WAV header for audio of unknown length, written by the standard library's wave module."""
    buffer = io.BytesIO()
    writer = wave.open(buffer, "wb")
    writer.setnchannels(1)
    writer.setsampwidth(2)
    writer.setframerate(rate)
    # The largest sizes the header can hold: players read on until the stream ends.
    writer.setnframes((0xFFFFFFFF - 36) // 2)
    writer.writeframesraw(b"")
    header = buffer.getvalue()
    return header  # not closed: closing would patch the sizes back to the frames written


def _blocks(path, offset: int = 0) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        fh.seek(offset)
        while block := fh.read(BLOCK):
            yield block


class _Sent:
    """What a stream has sent so far: the header, and the bytes of PCM (wav and pcm streams)."""

    def __init__(self, with_header: bool):
        self.header = not with_header  # a stream without a header has "sent" it
        self.pcm = 0


def _header(fmt: str, rate: int | None, files: ChunkFiles, head: bytes = b"") -> bytes:
    return wav_stream_header(rate) if fmt == "wav" else (head or files.header())


def audio_chunks(record: JobRecord, with_header: bool = True) -> Iterator[bytes]:
    """The job's audio in its format, as it is made. Raises StreamAborted when the job ends
    without it."""
    sent = _Sent(with_header and record.options.format in ("wav", *STREAM_HEADERS))
    timed = False
    for block in _audio(record, sent):
        if not timed and sent.pcm:
            timed = True
            metrics.first_byte(record, time.time())
        yield block


def _audio(record: JobRecord, sent: _Sent) -> Iterator[bytes]:
    svc = services.get()
    store, storage = svc.store, svc.storage
    job_id, fmt = record.id, record.options.format
    files = ChunkFiles(storage, job_id, fmt)
    index = 0
    if files.stream_kind in LIVE_KINDS:
        if (yield from _live_first_chunk(record, files, sent)):
            return  # the job had ended: all of it came from its file
        index = 1
    idle_since = time.monotonic()
    while True:
        total, rate, _ = store.chunks.layout(job_id)
        if total is not None and index >= total:
            # Every chunk sent: the stream ends when the job does, so a job that fails while it is
            # assembled still ends it the way a failure mid-stream does.
            status = store.jobs.status(job_id)
            if status == "succeeded":
                return
            if status in (None, "failed", "canceled"):
                raise StreamAborted(f"job {job_id} ended {status or 'deleted'} after its last chunk")
            time.sleep(POLL_S)
            continue
        path = files.piece(index) if total is not None else None
        if path is not None:
            if not sent.header:
                sent.header = True
                yield _header(fmt, rate, files)
            try:
                for block in _blocks(path):
                    sent.pcm += len(block)
                    yield block
            except FileNotFoundError:
                pass  # assembled and removed between the check and the open: handled below
            else:
                index += 1
                idle_since = time.monotonic()
                continue
        status = store.jobs.status(job_id)
        if status == "succeeded":
            yield from _finish_from_file(record, index, sent.pcm, sent.header)
            return
        if status in (None, "failed", "canceled"):
            raise StreamAborted(f"job {job_id} ended {status or 'deleted'} before its audio was complete")
        if time.monotonic() - idle_since > IDLE_TIMEOUT_S:
            raise StreamAborted(f"job {job_id} made no progress for {IDLE_TIMEOUT_S:g} s")
        time.sleep(POLL_S)


def _live_first_chunk(record: JobRecord, files: ChunkFiles, sent: _Sent):
    """The job's first chunk, from its piece stream while it is spoken (Redis wakes this the moment
    a piece is added), and from its file once it has landed, at the same offset: the pieces are the
    file's bytes. A second attempt at the chunk (its worker died) makes the same bytes again: what
    was sent already is skipped, so nothing is sent twice. Returns True when the job had ended and
    the rest of it came from its finished file."""
    svc = services.get()
    store = svc.store
    job_id, fmt = record.id, record.options.format
    after, at = "0", 0  # the last piece read; the bytes of the chunk sent
    idle_since = time.monotonic()
    while True:
        pieces = store.pieces.read(job_id, after, block_ms=PIECE_WAIT_MS)
        for piece in pieces:
            after = piece.id
            if piece.kind == "start" and not sent.header:
                sent.header = True
                yield _header(fmt, piece.rate, files, piece.head)
            elif piece.kind == "data" and piece.at <= at < piece.at + len(piece.data) and sent.header:
                data = piece.data[at - piece.at:]
                at += len(data)
                sent.pcm += len(data)
                yield data
            elif piece.kind == "end" and piece.at == at and sent.header:
                return False
        if pieces:
            idle_since = time.monotonic()
            if store.jobs.status(job_id) not in ("failed", "canceled", None):
                continue
            # Canceled (or failed) while its pieces still come: the stream ends now, below.
        # No piece for a while: the chunk landed (its stream goes then), or the job ended.
        path = files.piece(0)
        if path is not None and store.chunks.layout(job_id)[0] is not None:
            if not sent.header:
                sent.header = True
                yield _header(fmt, store.chunks.layout(job_id)[1], files)
            try:
                for block in _blocks(path, at):
                    sent.pcm += len(block)
                    yield block
                return False
            except FileNotFoundError:
                pass  # assembled and removed meanwhile: the job's file has the rest
        status = store.jobs.status(job_id)
        if status == "succeeded":
            yield from _finish_from_file(record, 0, sent.pcm, sent.header)
            return True
        if status in (None, "failed", "canceled"):
            raise StreamAborted(f"job {job_id} ended {status or 'deleted'} before its audio was complete")
        if time.monotonic() - idle_since > IDLE_TIMEOUT_S:
            raise StreamAborted(f"job {job_id} made no progress for {IDLE_TIMEOUT_S:g} s")


def _finish_from_file(record: JobRecord, index: int, sent_pcm: int, header_sent: bool) -> Iterator[bytes]:
    """The rest of a job that succeeded while (or before) we streamed it, from its file."""
    path = services.get().storage.audio_path(record.id, record.options.format)
    fmt = record.options.format
    if not path.is_file():
        raise StreamAborted(f"job {record.id}'s audio is gone")
    if index == 0 and sent_pcm == 0 and not header_sent:
        yield from _blocks(path)  # nothing sent yet (say, a cache hit): the whole file
    elif fmt == "pcm":
        yield from _blocks(path, sent_pcm)
    elif fmt == "wav":
        # The file's data is the PCM the stream was sending: go on from the same frame.
        with wave.open(str(path), "rb") as reader:
            reader.setpos(sent_pcm // 2)
            while frames := reader.readframes(BLOCK // 2):
                yield frames
    else:
        # Compressed pieces stay until the retention sweep; gone means the job is long over.
        raise StreamAborted(f"job {record.id}'s chunk {index} is gone")


def mimetype(fmt: str, rate: int | None) -> str:
    if fmt == "pcm":
        return f"audio/L16; rate={rate}; channels=1" if rate else "audio/L16"
    return CONTENT_TYPES[fmt]


def first_audio(record: JobRecord, timeout_s: float) -> tuple[JobRecord, int | None, bool]:
    """Wait until the job's first audio is there (its first piece, or its first chunk landed) or
    the job ended: (the record then, the output rate once known, whether audio is there). The answer's status line and
    headers go out only after this, so a job that fails before any audio gets a proper error
    instead of a broken stream."""
    svc = services.get()
    files = ChunkFiles(svc.storage, record.id, record.options.format)
    live = files.stream_kind in LIVE_KINDS
    deadline = time.monotonic() + timeout_s
    after, rate = "0", None
    while True:
        total, planned_rate, _ = svc.store.chunks.layout(record.id)
        rate = planned_rate or rate
        if total is not None and files.piece(0) is not None:
            return record, rate, True
        if live:
            # Woken by the worker's first piece, not by a poll.
            for piece in svc.store.pieces.read(record.id, after, block_ms=PIECE_WAIT_MS):
                after = piece.id
                rate = piece.rate or rate
                if piece.kind == "data":
                    return record, rate, True
        current = svc.store.jobs.get(record.id)
        if current is None or current.status in ("succeeded", "failed", "canceled"):
            return current or record.model_copy(update={"status": "canceled"}), rate, current is not None
        if time.monotonic() >= deadline:
            return current, rate, False
        if not live:
            time.sleep(POLL_S)


@bp.get("/<job_id>/stream")
def stream(job_id: str):
    record = owned_job(job_id)
    fmt = record.options.format
    if fmt not in STREAMABLE:
        raise ApiError(409, "not_streamable", f"{fmt} cannot be streamed (its header needs the whole length); "
                       "GET the audio when the job has succeeded", "format")
    record, rate, _ = first_audio(record, services.get().settings.limits.speech_timeout_s)
    if record.status == "succeeded":
        path = services.get().storage.audio_path(record.id, fmt)
        if not path.is_file():
            raise ApiError(404, "not_found", "the job's files have expired or were deleted")
        return send_file(path, mimetype=mimetype(fmt, record.result.sample_rate), max_age=0)
    if record.status in ("failed", "canceled"):
        reason = f": {record.error.message}" if record.error else ""
        raise ApiError(409, "not_ready", f"the job is {record.status}; it has no audio{reason}")
    response = Response(stream_with_context(audio_chunks(record)), mimetype=mimetype(fmt, rate))
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # a proxy in front must pass chunks on at once
    if rate:
        response.headers["X-Voxq-Sample-Rate"] = str(rate)
    return response
