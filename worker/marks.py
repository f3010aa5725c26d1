"""Timing marks: for each segment spoken, a sentence entry, its SSML marks and one entry per
character, streamed to a JSON array so a 100,000-character job never holds them all.

Every entry is a dict with `type`, `value`, `start_ms` and `end_ms` (a job assembled from
chunks shifts them all by the chunk's offset). Sentence and character entries also carry
`start` and `end`: the [start, end) of what they read in the text the user sent, so a player
can highlight 2023 while 二零二三 is heard.
"""
from __future__ import annotations

import json
from pathlib import Path

from shared.text.segmenter import Segment


def entries(segment: Segment, marks, start_ms: float, end_ms: float) -> list[dict]:
    """The segment's entries, in time order, from the engine's per-character marks (relative to
    the segment) and the segment's own offsets and SSML marks."""
    spans = segment.spans
    chars = []
    for mark in marks:
        entry = {"type": "char", "value": mark.char, "start_ms": round(start_ms + mark.start_ms, 1),
                 "end_ms": round(start_ms + mark.end_ms, 1)}
        if spans and mark.index is not None and mark.index < len(spans):
            entry["start"], entry["end"] = spans[mark.index]
        chars.append((mark.index, entry))
    pending = sorted(segment.marks, key=lambda m: m["at"])
    # Marks before the first spoken character come first, at the segment's start.
    first = chars[0][0] if chars and chars[0][0] is not None else None
    found = []
    while pending and first is not None and pending[0]["at"] <= first:
        found.append(_ssml_mark(pending.pop(0)["name"], round(start_ms, 1)))
    if segment.text and chars:
        sentence = {"type": "sentence", "value": segment.text, "start_ms": round(start_ms, 1),
                    "end_ms": round(end_ms, 1)}
        if spans:
            sentence["start"], sentence["end"] = min(s[0] for s in spans), max(s[1] for s in spans)
        found.append(sentence)
    for index, entry in chars:
        while pending and index is not None and pending[0]["at"] <= index:
            found.append(_ssml_mark(pending.pop(0)["name"], entry["start_ms"]))
        found.append(entry)
    found += [_ssml_mark(m["name"], round(end_ms, 1)) for m in pending]
    return found


def _ssml_mark(name: str, at_ms: float) -> dict:
    return {"type": "mark", "value": name, "start_ms": at_ms, "end_ms": at_ms}


class MarksWriter:
    """Entries streamed to a JSON array, so a 100,000-character job never holds them all."""

    def __init__(self, path: Path | None):
        self._fh = open(path, "w", encoding="utf-8") if path else None
        self._first = True
        if self._fh:
            self._fh.write("[")

    def write(self, segment: Segment, marks, start_ms: float, end_ms: float) -> None:
        """A segment's entries, from the engine's marks for it."""
        self.write_entries(entries(segment, marks, start_ms, end_ms))

    def write_entries(self, found: list[dict], offset_ms: float = 0.0) -> None:
        """Entries made earlier (a chunk's), shifted by `offset_ms` as a unit."""
        if not self._fh:
            return
        for entry in found:
            if offset_ms:
                entry = dict(entry, start_ms=round(offset_ms + entry["start_ms"], 1),
                             end_ms=round(offset_ms + entry["end_ms"], 1))
            self._fh.write(("" if self._first else ",\n") + json.dumps(entry, ensure_ascii=False))
            self._first = False

    def close(self) -> None:
        if self._fh:
            self._fh.write("]\n")
            self._fh.close()
