"""A job's first chunk while it is spoken: its audio, piece by piece, in a Redis stream per job, so
the API sends the first audio the moment the engine makes it, woken by Redis (XREAD BLOCK) rather
than by polling storage.

Each attempt at the chunk writes a "start" entry (the attempt, the output rate, the header a G.711
WAV stream begins with), then "data" entries (the stream's bytes, with their offset in the
chunk), then an "end" entry (the chunk's size in bytes). Synthesis is deterministic, so a second
attempt (its worker died) makes the same bytes: a listener skips what it has sent already. The
stream is bounded (MAXLEN) and short-lived: it goes once the chunk's files land (readers then
finish from the file, at the same offset), and expires on its own if no attempt ever lands.
"""
from __future__ import annotations

from dataclasses import dataclass

import redis

from shared.store import keyspace
from shared.store.connection import undecoded

# Far more pieces than a first chunk has (a few per segment); the bound only stops a runaway.
MAX_ENTRIES = 2000
TTL_S = 300


@dataclass
class Piece:
    id: str
    kind: str  # "start", "data" or "end"
    attempt: int
    at: int = 0  # data: offset in the chunk's bytes; end: the chunk's size
    data: bytes = b""
    rate: int | None = None  # start: the output sample rate
    head: bytes = b""  # start: the WAV header of a G.711 WAV stream


class PieceStore:
    def __init__(self, client: redis.Redis):
        # The pieces are bytes: a client of the same Redis and options that does not decode them.
        self.client = undecoded(client)

    def _add(self, job_id: str, fields: dict) -> None:
        key = keyspace.job_pieces(job_id)
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(key, fields, maxlen=MAX_ENTRIES, approximate=True)
        pipe.expire(key, TTL_S)
        pipe.execute()

    def start(self, job_id: str, attempt: int, rate: int, head: bytes = b"") -> None:
        self._add(job_id, {"kind": "start", "attempt": attempt, "rate": rate, "head": head})

    def add(self, job_id: str, attempt: int, at: int, data: bytes) -> None:
        self._add(job_id, {"kind": "data", "attempt": attempt, "at": at, "data": data})

    def end(self, job_id: str, attempt: int, size: int) -> None:
        self._add(job_id, {"kind": "end", "attempt": attempt, "at": size})

    def read(self, job_id: str, after: str = "0", block_ms: int | None = None) -> list[Piece]:
        """The pieces after entry `after`, waiting up to `block_ms` for the first one."""
        found = self.client.xread({keyspace.job_pieces(job_id): after}, block=block_ms)
        pieces = []
        for _, entries in found or ():
            for entry_id, fields in entries:
                pieces.append(Piece(
                    id=entry_id.decode(), kind=fields[b"kind"].decode(), attempt=int(fields[b"attempt"]),
                    at=int(fields.get(b"at", 0)), data=fields.get(b"data", b""),
                    rate=int(fields[b"rate"]) if b"rate" in fields else None, head=fields.get(b"head", b"")))
        return pieces

    def delete(self, job_id: str) -> None:
        self.client.delete(keyspace.job_pieces(job_id))
