"""Planning a job into chunks: ordered runs of whole segments, sized by the audio they will make.

The first chunk is small, so the first audio comes fast; the rest aim at a size where one chunk
is a few seconds of work: big enough that the per-task cost is noise, small enough that a short
job never waits long behind one, and that a dead worker costs little.
"""
from __future__ import annotations

from dataclasses import asdict, replace

from shared.config import Settings
from shared.options import SynthesisOptions
from shared.text.segmenter import Segment

# The Baker voice speaks about five characters a second at speed 1.0 (0.2 s each); the estimate
# only sizes chunks, so a voice a little faster or slower just makes chunks a little longer or shorter.
SECONDS_PER_CHAR = 0.2


def expected_seconds(segment: Segment, speed: float, settings: Settings) -> float:
    spoken = sum(1 for ch in segment.text if ch.isalnum())
    pause = {"sentence": settings.text.sentence_pause_s, "clause": settings.text.clause_pause_s}
    after = segment.pause_s if segment.pause_s is not None else pause.get(segment.pause, 0.0)
    return spoken * SECONDS_PER_CHAR / (speed * segment.rate) + after


# The first segment, when it is a long sentence, is cut after its first clause: the first chunk
# then takes a fraction of a second to speak, and that is when the first audio can go out.
FIRST_SEGMENT_CHARS = 12
_CLAUSE_END = "，、；：,;:"


def quick_start(segments: list[Segment]) -> list[Segment]:
    """The plan with its first segment cut after its first clause, when that segment is long.
    Part of the plan itself (one-piece synthesis speaks the same segments), so chunked audio
    still equals one-piece audio."""
    if not segments:
        return segments
    first = segments[0]
    spoken = [i for i, ch in enumerate(first.text) if ch.isalnum()]
    if len(spoken) <= FIRST_SEGMENT_CHARS:
        return segments
    for index, ch in enumerate(first.text):
        before = sum(1 for i in spoken if i < index)
        if ch in _CLAUSE_END and before >= 4 and len(spoken) - before >= 4:
            return [*split_at(first, index + 1), *segments[1:]]
    return segments


def split_at(segment: Segment, k: int) -> tuple[Segment, Segment]:
    """Two segments, the first `k` characters (ending in a clause mark, so a clause pause) and the
    rest, each with its share of the per-character readings, offsets and SSML marks."""
    def part(values, lo, hi):
        return None if values is None else values[lo:hi]

    head = replace(segment, text=segment.text[:k], pause="clause", pause_s=None,
                   pinyin=part(segment.pinyin, 0, k), pinyin_from=part(segment.pinyin_from, 0, k),
                   spans=part(segment.spans, 0, k), marks=[m for m in segment.marks if m["at"] < k])
    tail = replace(segment, text=segment.text[k:], pinyin=part(segment.pinyin, k, None),
                   pinyin_from=part(segment.pinyin_from, k, None), spans=part(segment.spans, k, None),
                   marks=[dict(m, at=m["at"] - k) for m in segment.marks if m["at"] >= k])
    return head, tail


def plan_chunks(segments: list[Segment], options: SynthesisOptions, settings: Settings) -> list[list[Segment]]:
    chunks: list[list[Segment]] = []
    current: list[Segment] = []
    seconds = 0.0
    for segment in segments:
        current.append(segment)
        seconds += expected_seconds(segment, options.speed, settings)
        target = settings.text.first_chunk_s if not chunks else settings.text.chunk_s
        if seconds >= target:
            chunks.append(current)
            current, seconds = [], 0.0
    if current:
        chunks.append(current)
    return chunks


def encode(chunk: list[Segment], first_index: int) -> dict:
    """A chunk as the plan stores it (JSON): its segments and the index of its first segment."""
    return {"first": first_index, "segments": [asdict(s) for s in chunk]}


def encode_all(chunks: list[list[Segment]]) -> list[dict]:
    """Every chunk of a plan encoded, each knowing where its segments start in the job."""
    encoded, first = [], 0
    for chunk in chunks:
        encoded.append(encode(chunk, first))
        first += len(chunk)
    return encoded


def decode(data: dict) -> tuple[list[Segment], int]:
    return [Segment(**s) for s in data["segments"]], int(data["first"])
