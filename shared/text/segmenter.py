"""Segmentation: normalised text into model-sized segments, and segments into jieba words."""
from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field
from functools import cache

logger = logging.getLogger(__name__)

SENTENCE_END = "。！？\n"
CLAUSE_END = "，；：、"
PUNCTUATION = SENTENCE_END + CLAUSE_END
SENTENCES = re.compile(f"[^{SENTENCE_END}]*[{SENTENCE_END}]*")
CLAUSES = re.compile(f"[^{CLAUSE_END}]*[{CLAUSE_END}]*")


@dataclass(frozen=True)
class Segment:
    """One engine call's worth of speech and everything it needs, as plain JSON-able data: a job's
    plan is stored and rebuilt with Segment(**data), and any worker may render any segment."""

    text: str  # normalised: CJK characters and ，。！？；：、
    pause: str = "none"  # after the segment: "sentence", "clause" or "none"
    # An SSML <break> after the segment, in seconds: it replaces the pause `pause` names, and
    # applies after the last segment too.
    pause_s: float | None = None
    # SSML prosody, as ratios of the request's speed, pitch, volume and pitch contour.
    rate: float = 1.0
    pitch: float = 1.0
    volume: float = 1.0
    pitch_range: float = 1.0
    # Readings a lexicon or SSML fixed: per character of `text`, a tone-numbered syllable or None;
    # and whose each is ("lexicon" or "ssml"). None when nothing is fixed.
    pinyin: list | None = None
    pinyin_from: list | None = None
    # Per character of `text`: its [start, end) in the text the user sent. None when unknown.
    spans: list | None = None
    # SSML marks: {"name", "at"}, each just before character `at` of `text` (at == len(text): after it).
    marks: list = field(default_factory=list)


@cache
def _jieba():
    # Imported and initialised on first use: jieba loads its dictionary when initialised.
    with warnings.catch_warnings():
        # jieba 0.42 imports pkg_resources, whose deprecation notice is no news to our users.
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def words(text: str, hmm: bool = True) -> list[str]:
    """Jieba's word segmentation of the text (hmm: guess words the dictionary lacks)."""
    return _jieba().lcut(text, HMM=hmm)


def _spoken_len(text: str) -> int:
    return sum(c not in PUNCTUATION for c in text)


def _pause(text: str) -> str:
    if text[-1] in SENTENCE_END:
        return "sentence"
    return "clause" if text[-1] in CLAUSE_END else "none"


def _hard_split(text: str, max_chars: int) -> list[str]:
    """Run-on text in pieces of at most max_chars, cut between words where one fits."""
    pieces, piece = [], ""
    # Without jieba's HMM: its Viterbi copies the path at every character, quadratic on a long run
    # of characters its dictionary does not know; cutting between dictionary words is enough here.
    for word in words(text, hmm=False):
        while len(piece) + len(word) > max_chars:
            if piece:
                pieces.append(piece)
                piece = ""
            else:  # a word longer than a whole piece is cut where it must be
                pieces.append(word[:max_chars])
                word = word[max_chars:]
        piece += word
    return pieces + [piece] if piece else pieces


def _fit(clause: str, max_chars: int) -> list[Segment]:
    if _spoken_len(clause) <= max_chars:
        return [Segment(clause, _pause(clause))]
    body = clause.rstrip(PUNCTUATION)
    pieces = _hard_split(body, max_chars)
    pieces[-1] += clause[len(body) :]
    return [Segment(piece, "none") for piece in pieces[:-1]] + [Segment(pieces[-1], _pause(pieces[-1]))]


def split_segments(text: str, max_chars: int = 60, should_stop=None) -> list[Segment]:
    """Sentences as segments; a sentence over max_chars spoken characters is packed clause by clause.
    `should_stop`, if given, is called before each sentence and may raise to abandon the text."""
    segments: list[Segment] = []
    for sentence in SENTENCES.findall(text):
        if should_stop is not None:
            should_stop()
        # A newline ends the sentence but is no character of it.
        ends_line = sentence.endswith("\n")
        sentence = sentence.replace("\n", "").strip()
        if not _spoken_len(sentence):
            continue
        packed, pieces = "", []
        for clause in filter(None, CLAUSES.findall(sentence)):
            if packed and _spoken_len(packed + clause) > max_chars:
                pieces.extend(_fit(packed, max_chars))
                packed = ""
            packed += clause
        if _spoken_len(packed):
            pieces.extend(_fit(packed, max_chars))
        if ends_line:
            pieces[-1] = Segment(pieces[-1].text, "sentence")
        segments.extend(pieces)
    return segments
