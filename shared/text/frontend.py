"""From what the user sent (text or SSML, plus lexicons) to the segments the voice will speak, and
the preview of them: the one path both the workers (to speak) and the API (to preview) take."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from shared.text import ssml as ssml_doc
from shared.text import pinyin
from shared.text.lexicon import Lexicons
from shared.text.normalizer import Aligned, Interrupted, could_speak, normalize_aligned
from shared.text.say_as import reading
from shared.text.segmenter import Segment, split_segments


@dataclass
class _Block:
    """Text spoken with one prosody, up to a break, a sentence end or a prosody change."""

    prosody: ssml_doc.Prosody = ssml_doc.Prosody()
    text: str = ""
    tags: list = field(default_factory=list)
    pending_marks: tuple = ()
    pause_s: float | None = None
    sentence_end: bool = False

    def add(self, piece: Aligned) -> None:
        if not piece.text:
            self.pending_marks += piece.trailing_marks
            return
        tags = list(piece.tags)
        if self.pending_marks:
            tags[0] = tags[0][:4] + (self.pending_marks + tags[0][4],)
            self.pending_marks = ()
        self.text += piece.text
        self.tags += tags
        self.pending_marks = piece.trailing_marks

    def aligned(self) -> Aligned:
        return Aligned(self.text, self.tags, self.pending_marks)


def break_seconds(item: ssml_doc.Break, sentence_pause_s: float, clause_pause_s: float) -> float:
    if item.seconds is not None:
        return item.seconds
    # Strengths as the punctuation pauses they stand for: weak is a comma, medium a full stop.
    return {"none": 0.0, "x-weak": clause_pause_s / 2, "weak": clause_pause_s, "medium": sentence_pause_s,
            "strong": 2 * sentence_pause_s, "x-strong": 3 * sentence_pause_s}[item.strength]


def _blocks(text: str, is_ssml: bool, lexicons: Lexicons, sentence_pause_s: float,
            clause_pause_s: float) -> list[_Block]:
    if not is_ssml:
        block = _Block()
        block.add(lexicons.apply(Aligned.plain(text)))
        return [block]
    blocks = [_Block()]
    for item in ssml_doc.parse(text).items:
        current = blocks[-1]
        if isinstance(item, ssml_doc.Run):
            ended = not current.text and (current.pause_s is not None or current.sentence_end)
            if ended or (current.text and item.prosody != current.prosody):
                # A break before any text is silence before it: that block stays empty.
                current = _Block(item.prosody, pending_marks=current.pending_marks)
                blocks[-1].pending_marks = ()
                blocks.append(current)
            current.prosody = item.prosody
            current.add(_piece(item, lexicons))
        elif isinstance(item, ssml_doc.Mark):
            current.pending_marks += (item.name,)
        elif isinstance(item, (ssml_doc.Break, ssml_doc.SentenceEnd)):
            if isinstance(item, ssml_doc.Break):
                seconds = break_seconds(item, sentence_pause_s, clause_pause_s)
                current.pause_s = (current.pause_s or 0.0) + seconds
            else:
                current.sentence_end = True
            if current.text:
                blocks.append(_Block(current.prosody))
    return blocks


def _piece(run: ssml_doc.Run, lexicons: Lexicons) -> Aligned:
    if run.kind == "text":
        return lexicons.apply(Aligned(run.text, [(s, e, None, None, ()) for s, e in run.spans]))
    if run.kind == "phoneme":
        return Aligned(run.text, [(s, e, py, pinyin.SSML, ()) for (s, e), py in zip(run.spans, run.pinyin)])
    whole = (min(s for s, _ in run.spans), max(e for _, e in run.spans))
    spoken = reading(run.text, run.interpret_as, run.format) if run.kind == "say-as" else run.text
    return Aligned(spoken, [whole + (None, None, ())] * len(spoken))


def _segments(block: _Block, max_chars: int, check=None) -> list[Segment]:
    normal = normalize_aligned(block.aligned(), check)
    prosody = block.prosody
    found, cursor = [], 0
    for piece in split_segments(normal.text, max_chars, check):
        at = normal.text.find(piece.text, cursor)
        cursor = at + len(piece.text)
        tags = normal.tags[at:cursor]
        fixed = [t[2] for t in tags]
        found.append(Segment(
            piece.text, piece.pause,
            rate=prosody.rate, pitch=prosody.pitch, volume=prosody.volume, pitch_range=prosody.pitch_range,
            pinyin=fixed if any(fixed) else None,
            pinyin_from=[t[3] for t in tags] if any(fixed) else None,
            spans=[[t[0], t[1]] for t in tags],
            marks=[{"name": name, "at": i} for i, t in enumerate(tags) for name in t[4]],
        ))
    if found:
        last = found[-1]
        extra = [{"name": name, "at": len(last.text)} for name in normal.trailing_marks]
        found[-1] = dataclasses.replace(
            last, marks=last.marks + extra, pause_s=block.pause_s,
            pause="sentence" if block.sentence_end else last.pause)
    return found


def _every(should_stop: Callable[[], bool] | None, interval_s: float):
    """A check for the planning loops: asks `should_stop` at most once per interval (it may read
    Redis), and raises Interrupted when it says stop."""
    if should_stop is None:
        return None
    due = time.monotonic() + interval_s

    def check() -> None:
        nonlocal due
        now = time.monotonic()
        if now >= due:
            due = now + interval_s
            if should_stop():
                raise Interrupted()

    return check


NOTHING_TO_SAY = "nothing to say: the text has no speakable characters"


def trim(text: str) -> str:
    """The text as every face counts, stores and speaks it: trailing whitespace (the newline a file
    or `echo` ends with) is no part of it. Leading whitespace stays, so every offset a mark or a
    preview gives still points into the text the user sent."""
    return text.rstrip()


def speakable(text: str, *, ssml: bool = False, lexicons: Sequence = ()) -> bool:
    """Whether the text has anything to say: the rule the API applies before a job exists and the
    worker before it plans. Cheap, and sound: False only when plan() would give no speech (a
    character with no reading, like 兙, passes here and fails the job later). Plain text costs one
    regex search, SSML a parse; no reading rule, dictionary or word splitter runs."""
    chosen = lexicons if isinstance(lexicons, Lexicons) else Lexicons(lexicons)
    if ssml:
        runs = [item for item in ssml_doc.parse(text).items if isinstance(item, ssml_doc.Run)]
        # A say-as reading speaks some symbols on their own (characters: . is 点): count it as speech.
        if any(run.kind == "say-as" or could_speak(run.text) for run in runs):
            return True
        plain = [run.text for run in runs if run.kind == "text"]
    else:
        if could_speak(text):
            return True
        plain = [text]
    # Only a lexicon's alias can still give words to text that has none of its own.
    return chosen.pattern is not None and any(could_speak(chosen.apply(Aligned.plain(p)).text) for p in plain)


def plan(text: str, *, ssml: bool = False, lexicons: Sequence = (), max_segment_chars: int = 60,
         sentence_pause_s: float = 0.35, clause_pause_s: float = 0.15,
         should_stop: Callable[[], bool] | None = None, check_every_s: float = 0.25) -> list[Segment]:
    """The segments to speak. Raises ssml.SsmlError for SSML voxq does not speak, and Interrupted
    when `should_stop` (asked every check_every_s while planning a long text) says stop."""
    chosen = lexicons if isinstance(lexicons, Lexicons) else Lexicons(lexicons)
    check = _every(should_stop, check_every_s)
    segments: list[Segment] = []
    leftover_marks: list[str] = []
    for block in _blocks(text, ssml, chosen, sentence_pause_s, clause_pause_s):
        made = _segments(block, max_segment_chars, check)
        if leftover_marks and made:
            first = made[0]
            made[0] = dataclasses.replace(first, marks=[{"name": n, "at": 0} for n in leftover_marks] + first.marks)
            leftover_marks = []
        if made:
            segments.extend(made)
            continue
        # A block with nothing to say still has its marks and its break.
        leftover_marks += list(block.pending_marks)
        if block.pause_s is not None:
            if segments:
                last = segments[-1]
                segments[-1] = dataclasses.replace(last, pause_s=(last.pause_s or 0.0) + block.pause_s)
            else:  # a break before any speech: silence first
                segments.append(Segment("", "none", pause_s=block.pause_s))
        elif block.sentence_end and segments:
            segments[-1] = dataclasses.replace(segments[-1], pause="sentence")
    if leftover_marks and segments:
        last = segments[-1]
        segments[-1] = dataclasses.replace(
            last, marks=last.marks + [{"name": n, "at": len(last.text)} for n in leftover_marks])
    return segments


def preview(segments: Sequence[Segment]) -> dict:
    """What the voice will say: the normalised text, and per segment each character's pinyin (tone
    numbers, and tone marks for people) and where it came from (dictionary, word, sandhi, lexicon or ssml) and its offsets in the input."""
    shown = []
    for segment in segments:
        chars = []
        for syl in pinyin.read(segment.text, segment.pinyin, segment.pinyin_from):
            span = segment.spans[syl.index] if segment.spans else [None, None]
            chars.append({"char": syl.char, "pinyin": syl.pinyin, "pinyin_marked": pinyin.tone_marked(syl.pinyin),
                          "source": syl.source, "start": span[0], "end": span[1]})
        shown.append({
            "text": segment.text, "pause": segment.pause, "pause_s": segment.pause_s,
            "rate": segment.rate, "pitch": segment.pitch, "volume": segment.volume,
            "pitch_range": segment.pitch_range, "marks": segment.marks, "chars": chars,
        })
    return {"normalized": "".join(s.text for s in segments), "segments": shown}
