"""A job's plan: its options and text checked, the text cut into the segments the voice will speak
(a long first sentence cut after its first clause), and the segments grouped into chunks sized by
the audio they will make.

The API's preview and the workers call the same functions, so a preview shows exactly what will be
spoken. The checks return a `Problem` (code, message, field); each caller raises its own error
from it (the API an HTTP answer, a worker a failed job).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Callable, NamedTuple, Sequence

from shared.config import Settings
from shared.options import SynthesisOptions, check_format_rate
from shared.text import frontend
from shared.text.segmenter import Segment
from shared.text.ssml import SsmlError


class Problem(NamedTuple):
    """Why a request cannot be spoken: a stable code, a message for people, the field at fault."""

    code: str
    message: str
    field: str | None = None


class PlanError(ValueError):
    """The text cannot be planned; `problem` says why."""

    def __init__(self, problem: Problem):
        super().__init__(problem.message)
        self.problem = problem


class Canceled(Exception):
    """The job was canceled while it was planned or spoken."""


NOTHING_TO_SAY = Problem("nothing_to_say", frontend.NOTHING_TO_SAY, "text")


def check_text(text: str, limit: int) -> Problem | None:
    if not text or not text.strip():
        return Problem("empty_text", "text is empty", "text")
    if len(text) > limit:
        return Problem("text_too_long", f"text has {len(text)} characters; the limit is {limit}", "text")
    return None


def check_options(options: SynthesisOptions, emotions: Sequence[str], voices: Sequence[str]) -> Problem | None:
    """Whether an engine with these emotions and voices can speak with these options. The API
    checks against every live engine; a worker against its own, once per job. No voices known
    (no worker registered yet) means any voice is left to the worker to check."""
    if options.emotion not in emotions:
        return Problem("unknown_emotion", f"unknown emotion {options.emotion!r}; valid: {', '.join(emotions)}",
                       "emotion")
    if options.voice is not None and voices and options.voice not in voices:
        return Problem("unknown_voice", f"unknown voice {options.voice!r}; valid: {', '.join(sorted(voices))}",
                       "voice")
    problem = check_format_rate(options.format, options.sample_rate)
    if problem:
        return Problem("unsupported_sample_rate", problem, "sample_rate")
    return None


@dataclass
class Head:
    """The start of a plan: the segments of the text's first sentence (a long one cut after its
    first clause), and where the rest of the text begins (its length when nothing is left)."""

    segments: list[Segment]
    end: int


# A plain text is planned a sentence at a time from the start: its first sentence first, so the
# first chunk can be spoken while the rest is still planned. Segments never cross a sentence end,
# so the two parts are what planning the whole text at once gives.
_SENTENCE_END = "。！？!?\n"
_CLOSERS = "”’」』）)】》\"'"
HEAD_MAX_CHARS = 400


def _head_end(text: str, text_type: str) -> int | None:
    if text_type != "text":
        return None  # an SSML document is one tree: planned whole
    for index, ch in enumerate(text[:HEAD_MAX_CHARS]):
        if ch in _SENTENCE_END:
            end = index + 1
            while end < len(text) and (text[end] in _SENTENCE_END or text[end] in _CLOSERS):
                end += 1
            return end if end < len(text) else None
    return None


def sentence_end(text: str) -> int:
    """The length of `text`'s first sentence, with the marks and quotes that close it; 0 when no
    sentence has ended yet. A live session speaks each sentence as soon as it ends
    (api/live_session.py)."""
    for index, ch in enumerate(text):
        if ch in _SENTENCE_END:
            end = index + 1
            while end < len(text) and (text[end] in _SENTENCE_END or text[end] in _CLOSERS):
                end += 1
            return end
    return 0


def last_clause_end(text: str) -> int:
    """The length of `text` up to its last clause or sentence mark, 0 when it has none: where a
    sentence still being written can be cut without splitting a word."""
    for index in range(len(text) - 1, -1, -1):
        if text[index] in _CLAUSE_END or text[index] in _SENTENCE_END:
            return index + 1
    return 0


def _front(text: str, settings: Settings, text_type: str, lexicons, should_stop, offset: int = 0) -> list[Segment]:
    try:
        found = frontend.plan(
            text, ssml=text_type == "ssml", lexicons=lexicons,
            max_segment_chars=settings.text.max_segment_chars,
            sentence_pause_s=settings.text.sentence_pause_s, clause_pause_s=settings.text.clause_pause_s,
            should_stop=should_stop)
    except frontend.Interrupted:
        raise Canceled() from None
    except SsmlError as exc:
        raise PlanError(Problem(exc.code, str(exc), "text")) from None
    if offset:
        found = [replace(s, spans=[[a + offset, b + offset] for a, b in s.spans]) if s.spans else s for s in found]
    return found


def head(text: str, settings: Settings, text_type: str = "text", lexicons=(),
         should_stop: Callable[[], bool] | None = None, limit: int | None = None) -> Head:
    """The first sentence's segments; PlanError for a text that cannot be spoken at all."""
    whole = text
    text = frontend.trim(text)  # trailing whitespace is no part of the text, on every face
    problem = check_text(text, settings.limits.max_chars if limit is None else limit)
    if problem:
        raise PlanError(problem)
    try:
        # The API's rule too: a text of emoji fails at once, not after it was normalised.
        if not frontend.speakable(text, ssml=text_type == "ssml", lexicons=lexicons):
            raise PlanError(NOTHING_TO_SAY)
    except SsmlError as exc:
        raise PlanError(Problem(exc.code, str(exc), "text")) from None
    end = _head_end(text, text_type)
    return Head(quick_start(_front(text[:end], settings, text_type, lexicons, should_stop)), end or len(whole))


def rest(text: str, first: Head, settings: Settings, text_type: str = "text", lexicons=(),
         should_stop: Callable[[], bool] | None = None) -> list[Segment]:
    """The segments after the head's; PlanError when the whole text has nothing speakable."""
    found = _front(text[first.end:], settings, text_type, lexicons, should_stop, first.end) if first.end < len(text) else []
    if not any(segment.text for segment in (*first.segments, *found)):
        raise PlanError(NOTHING_TO_SAY)
    return found


def segments(text: str, settings: Settings, text_type: str = "text", lexicons=(),
             should_stop: Callable[[], bool] | None = None, limit: int | None = None) -> list[Segment]:
    """The segments to speak, with the lexicons applied (SSML when text_type is "ssml"). Raises
    PlanError for text that cannot be spoken, Canceled when `should_stop` says so."""
    first = head(text, settings, text_type, lexicons, should_stop, limit)
    return first.segments + rest(text, first, settings, text_type, lexicons, should_stop)


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


def quick_start(found: list[Segment]) -> list[Segment]:
    """The plan with its first segment cut after its first clause, when that segment is long.
    Part of the plan itself (one-piece synthesis speaks the same segments), so chunked audio
    still equals one-piece audio."""
    if not found:
        return found
    first = found[0]
    spoken = [i for i, ch in enumerate(first.text) if ch.isalnum()]
    if len(spoken) <= FIRST_SEGMENT_CHARS:
        return found
    for index, ch in enumerate(first.text):
        before = sum(1 for i in spoken if i < index)
        if ch in _CLAUSE_END and before >= 4 and len(spoken) - before >= 4:
            return [*split_at(first, index + 1), *found[1:]]
    return found


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


@dataclass
class Chunk:
    """A slice of a job: consecutive segments, spoken by one task; `first` is the job-wide index
    of its first segment."""

    segments: list[Segment]
    first: int

    def encode(self) -> dict:
        """The chunk as the plan in Redis stores it (JSON)."""
        return {"first": self.first, "segments": [asdict(s) for s in self.segments]}

    @classmethod
    def decode(cls, data: dict) -> "Chunk":
        return cls([Segment(**s) for s in data["segments"]], int(data["first"]))


def chunk_seconds(chunk: Chunk, speed: float, settings: Settings) -> float:
    """The seconds of audio a chunk should make."""
    return sum(expected_seconds(segment, speed, settings) for segment in chunk.segments)


def chunks(found: list[Segment], options: SynthesisOptions, settings: Settings, first_at_most: int | None = None,
           whole: bool = False) -> list[Chunk]:
    """The segments in chunks of about `chunk_s` seconds of audio each, the first of about
    `first_chunk_s` (and of at most `first_at_most` segments: the head's, when it was spoken
    before the rest was planned), each ending at a segment boundary. `whole`: one chunk (a live
    session's sentence, streamed piece by piece as it is spoken, must not wait on its tenant's
    dispatch for a second chunk while its first plays)."""
    if whole:
        return [Chunk(list(found), 0)]
    made: list[Chunk] = []
    current: list[Segment] = []
    seconds = 0.0
    first = 0
    for segment in found:
        current.append(segment)
        seconds += expected_seconds(segment, options.speed, settings)
        target = settings.text.first_chunk_s if not made else settings.text.chunk_s
        if seconds >= target or (not made and len(current) == first_at_most):
            made.append(Chunk(current, first))
            first += len(current)
            current, seconds = [], 0.0
    if current:
        made.append(Chunk(current, first))
    return made
