"""A job's chunk files on shared storage, and the one protocol for them: their names, the order an
attempt publishes them in, and when a chunk counts as landed. Workers write through it; assembly
and the API's streams read through it.

Each chunk is "<job>.c00007.<kind>":
- "pcm": 16-bit PCM at the output rate, what the file is assembled from and what wav and pcm
  streams send;
- "json": its length, timing marks and loudness measurement;
- for the formats whose stream sends pieces, the chunk encoded on its own ("mp3", "ogg", "aac",
  "mulaw-raw", ...);
- chunk 0 of a G.711 WAV job also has "head", the WAV header its stream starts with.

An attempt writes every file under a temporary name of its own (no two attempts share one, even
in one process), then renames them (atomic on one filesystem) header first and PCM last: the PCM's
arrival is what says "landed", to streams and to assembly, and a stream that sees a piece finds
the header there already. Which attempt lands is decided in Redis (shared/store/chunks.py): an
attempt that lost discards its temporaries, and one whose temporaries were cleared (its job ended,
or the chunk landed and the job's leftovers went) publishes nothing.
"""
from __future__ import annotations

import re
from pathlib import Path

from shared.options import STREAM_HEADER_KIND, STREAM_HEADERS, STREAM_PIECES
from shared.storage import Storage

PCM = "pcm"
META = "json"
_NAME = re.compile(r"^[0-9a-f]{32}\.c\d{5}\.")


def is_chunk_file(name: str) -> bool:
    return bool(_NAME.match(name))


class ChunkFiles:
    def __init__(self, storage: Storage, job_id: str, fmt: str | None = None):
        self.storage = storage
        self.job_id = job_id
        self.format = fmt
        # What a stream sends of each chunk: the PCM for wav and pcm, else the chunk's own piece;
        # None for formats that do not stream (flac, m4a) or when the format is not known.
        self.stream_kind = STREAM_PIECES.get(fmt) if fmt else None

    def path(self, index: int, kind: str) -> Path:
        return self.storage.folder(self.job_id) / f"{self.job_id}.c{index:05d}.{kind}"

    def kinds(self, index: int) -> list[str]:
        """The files an attempt at chunk `index` writes, in the order it publishes them."""
        kinds = []
        if index == 0 and self.format in STREAM_HEADERS:
            kinds.append(STREAM_HEADER_KIND)
        if self.stream_kind not in (None, PCM):
            kinds.append(self.stream_kind)
        return [*kinds, META, PCM]

    def landed(self, index: int) -> bool:
        return self.path(index, PCM).is_file()

    def piece(self, index: int) -> Path | None:
        """What a stream sends of chunk `index`, once it is there."""
        path = self.path(index, self.stream_kind)
        return path if path.is_file() else None

    def header(self) -> bytes:
        return self.path(0, STREAM_HEADER_KIND).read_bytes()

    def attempt(self, index: int, number: int = 0) -> "ChunkAttempt":
        return ChunkAttempt(self, index, number)

    def clear_temp(self) -> None:
        """Remove what the job's interrupted chunk attempts left behind (a killed worker cannot),
        once every chunk has landed or the job has ended: an attempt still running then (a paused
        worker's) finds its temporaries gone and publishes nothing. Never the job file's own
        temporaries: two workers may assemble it at once (the last chunk's late duplicate), each
        into its own, and neither may pull the other's away."""
        folder = self.storage.folder(self.job_id)
        pattern = f".{self.job_id}.c[0-9]*.tmp"
        if folder.is_dir():
            for path in folder.glob(pattern):
                path.unlink(missing_ok=True)

    def delete_chunk(self, index: int, kinds: tuple[str, ...]) -> None:
        for kind in kinds:
            self.path(index, kind).unlink(missing_ok=True)

    def delete(self, kinds: tuple[str, ...] | None = None) -> None:
        """Remove the job's chunk files (of these kinds, or all)."""
        folder = self.storage.folder(self.job_id)
        if folder.is_dir():
            for path in folder.glob(f"{self.job_id}.c[0-9]*.*"):
                if kinds is None or path.suffix.lstrip(".") in kinds:
                    path.unlink(missing_ok=True)


class ChunkAttempt:
    """One attempt at one chunk: where it writes (temporary names), then publish() or discard()."""

    def __init__(self, files: ChunkFiles, index: int, number: int = 0):
        self.index = index
        self.finals = {kind: files.path(index, kind) for kind in files.kinds(index)}
        tag = f"a{number}." if number else ""
        self.temps = {kind: files.storage.temp_path(final, tag) for kind, final in self.finals.items()}

    def temp(self, kind: str) -> Path | None:
        return self.temps.get(kind)

    @property
    def piece(self) -> Path | None:
        """The temporary of the chunk's stream piece, for formats that have one."""
        kinds = [k for k in self.temps if k not in (STREAM_HEADER_KIND, META, PCM)]
        return self.temps[kinds[0]] if kinds else None

    def complete(self) -> bool:
        """Whether every temporary is still there (a job's end clears a paused attempt's)."""
        return all(temp.is_file() for temp in self.temps.values())

    def publish(self) -> bool:
        """Rename the temporaries to the chunk's files, the PCM last; False (and nothing of this
        attempt left) when a temporary has gone meanwhile."""
        if not self.complete():
            self.discard()
            return False
        for kind, final in self.finals.items():  # in ChunkFiles.kinds' order: the PCM last
            try:
                Storage.publish(self.temps[kind], final)
            except FileNotFoundError:
                self.discard()
                return False
        return True

    def discard(self) -> None:
        for temp in self.temps.values():
            temp.unlink(missing_ok=True)
