"""SSML, the Chinese subset voxq speaks: parsed by a hardened XML parser into runs of text, breaks,
marks and sentence ends, each piece of text knowing where it sits in the document.

The API parses every SSML request before it stores a job, so malformed or hostile XML (entity
expansion, external entities) is a 422 naming the problem, with line and column, and never
reaches a worker. Pure Python: no text front end, no model stack.
"""
from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass, field

import defusedxml
from defusedxml.ElementTree import DefusedXMLParser, ParseError

from shared.text.pinyin import PinyinError, syllables

SUPPORTED = ("speak", "p", "s", "break", "prosody", "emphasis", "say-as", "phoneme", "sub", "mark")
INTERPRET_AS = ("cardinal", "number", "digits", "telephone", "date", "time", "characters", "spell-out",
                "currency", "ordinal")
DATE_FORMATS = ("ymd", "mdy", "dmy", "ym", "my", "md", "dm", "y", "m", "d")
PINYIN_ALPHABETS = ("py", "pinyin", "x-amazon-pinyin", "x-pinyin")
BREAK_STRENGTHS = ("none", "x-weak", "weak", "medium", "strong", "x-strong")
MAX_BREAK_S = 10.0
XML_NS = "{http://www.w3.org/XML/1998/namespace}"

# Element -> the attributes it takes (xml:lang is accepted everywhere and ignored: one voice).
ATTRIBUTES = {
    "speak": {"version", "lang", "base"},
    "p": {"lang"}, "s": {"lang"},
    "break": {"time", "strength"},
    "prosody": {"rate", "pitch", "volume"},
    "emphasis": {"level"},
    "say-as": {"interpret-as", "format", "detail"},
    "phoneme": {"alphabet", "ph"},
    "sub": {"alias"},
    "mark": {"name"},
}
TEXT_ONLY = ("say-as", "phoneme", "sub")
EMPTY = ("break", "mark")

# Keyword values, as ratios of the request's own speed, pitch and volume. Rate and pitch follow
# the spread Azure and Polly give them; volume keywords are amplitude ratios.
RATE_WORDS = {"x-slow": 0.6, "slow": 0.8, "medium": 1.0, "default": 1.0, "fast": 1.25, "x-fast": 1.5}
PITCH_WORDS = {"x-low": 0.8, "low": 0.9, "medium": 1.0, "default": 1.0, "high": 1.1, "x-high": 1.2}
VOLUME_WORDS = {"silent": 0.0, "x-soft": 0.3, "soft": 0.6, "medium": 1.0, "default": 1.0, "loud": 1.4,
                "x-loud": 1.8}
# <emphasis> as a prosody recipe: slower, louder and a wider pitch contour for stress.
EMPHASIS = {
    "strong": {"rate": 0.85, "volume": 1.4, "pitch_range": 1.3},
    "moderate": {"rate": 0.92, "volume": 1.2, "pitch_range": 1.15},
    "none": {},
    "reduced": {"rate": 1.08, "volume": 0.75, "pitch_range": 0.85},
}
# A voice reading at its middle register (Hz), for pitch given in Hz.
BASE_F0_HZ = 220.0
LIMITS = {"rate": (0.5, 2.0), "pitch": (0.5, 2.0), "volume": (0.0, 2.0), "pitch_range": (0.5, 2.0)}

NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
RELATIVE = re.compile(rf"({NUMBER})(%|st|Hz|dB)?", re.ASCII)
TIME = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s)", re.ASCII)


class SsmlError(ValueError):
    """The document is not SSML voxq speaks; `code` is stable, line and column point at it."""

    def __init__(self, code: str, message: str, line: int | None = None, column: int | None = None):
        where = f" (line {line}, column {column})" if line is not None else ""
        super().__init__(message + where)
        self.code = code
        self.line = line
        self.column = column


@dataclass(frozen=True)
class Prosody:
    """Ratios relative to the request's options; nested elements multiply."""

    rate: float = 1.0
    pitch: float = 1.0
    volume: float = 1.0
    pitch_range: float = 1.0

    def times(self, **ratios: float) -> "Prosody":
        values = {name: getattr(self, name) * ratios.get(name, 1.0) for name in LIMITS}
        # Nesting may not push the voice outside what it can do: clamp to the same ranges.
        return Prosody(**{name: min(max(v, LIMITS[name][0]), LIMITS[name][1]) for name, v in values.items()})


@dataclass
class Run:
    """Text to speak with one prosody. `kind` is "text" (normalised as usual, lexicons apply),
    "say-as", "sub" (its alias is spoken) or "phoneme" (each character's reading fixed)."""

    text: str
    spans: list[tuple[int, int]]  # per character of text: [start, end) in the document
    prosody: Prosody
    kind: str = "text"
    interpret_as: str | None = None
    format: str | None = None
    pinyin: list[str] | None = None


@dataclass
class Break:
    seconds: float | None = None  # from time; None: from strength
    strength: str = "medium"


@dataclass
class Mark:
    name: str


@dataclass
class SentenceEnd:
    """The end of an <s> or <p>: a sentence pause, whatever punctuation there is."""


@dataclass
class Document:
    items: list = field(default_factory=list)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def ratio(value: str, words: dict[str, float], name: str, unit_scale=None) -> float:
    """A W3C prosody value as a ratio: a keyword, a multiplier ("1.2"), a percentage ("80%"),
    or a relative change ("+10%", "-2st", "+20Hz", "+6dB")."""
    value = value.strip()
    if value in words:
        return words[value]
    m = RELATIVE.fullmatch(value)
    if not m:
        raise ValueError(f"{name}={value!r}: use one of {', '.join(words)}, a percentage or a relative change")
    number, unit = float(m.group(1)), m.group(2)
    relative = value[0] in "+-"
    if unit == "%":
        result = 1 + number / 100 if relative else number / 100
    elif unit == "st":
        result = 2 ** (number / 12)
    elif unit == "dB":
        result = 10 ** (number / 20)
    elif unit == "Hz":
        result = (BASE_F0_HZ + number) / BASE_F0_HZ if relative else number / BASE_F0_HZ
    elif relative:
        raise ValueError(f"{name}={value!r}: a relative change needs a unit (%, st, Hz or dB)")
    else:
        result = number
    if unit not in (None, "%") and unit_scale is not None and unit not in unit_scale:
        raise ValueError(f"{name}={value!r}: {unit} is not a unit of {name}")
    low, high = LIMITS[name]
    if not math.isfinite(result) or not low <= result <= high:
        raise ValueError(f"{name}={value!r} is {result:.2f} times the request's; the range is {low} to {high}")
    return result


def break_seconds(value: str) -> float:
    m = TIME.fullmatch(value.strip())
    if not m:
        raise ValueError(f"time={value!r}: use milliseconds or seconds, e.g. 500ms or 1.5s")
    seconds = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    if seconds > MAX_BREAK_S:
        raise ValueError(f"time={value!r} is longer than {MAX_BREAK_S:g} s")
    return seconds


class _Positions:
    """Byte offsets (what expat reports) to character offsets in the document."""

    def __init__(self, document: str):
        self.document = document
        self._starts = []
        at = 0
        for char in document:
            self._starts.append(at)
            at += len(char.encode("utf-8"))

    def char(self, byte_index: int) -> int:
        return bisect.bisect_right(self._starts, byte_index) - 1 if byte_index >= 0 else 0


class _Builder:
    """The parser's target: turns start/data/end events into runs, breaks and marks."""

    def __init__(self, document: str):
        self.positions = _Positions(document)
        self.document = document
        self.parser: DefusedXMLParser | None = None
        self.doc = Document()
        self.stack: list[tuple[str, Prosody, dict]] = []
        self.elements = 0

    # where the parser is, for error messages
    def where(self) -> tuple[int, int]:
        expat = self.parser.parser
        return expat.CurrentLineNumber, expat.CurrentColumnNumber + 1

    def fail(self, code: str, message: str):
        raise SsmlError(code, message, *self.where())

    def start(self, tag: str, attrs: dict):
        name = _local(tag)
        self.elements += 1
        if name not in SUPPORTED:
            self.fail("unsupported_ssml", f"<{name}> is not supported; supported elements: {', '.join(SUPPORTED)}")
        if not self.stack and name != "speak":
            self.fail("invalid_ssml", f"the root element must be <speak>, not <{name}>")
        if self.stack and name == "speak":
            self.fail("invalid_ssml", "<speak> may only be the root element")
        parent = self.stack[-1][0] if self.stack else None
        if parent in TEXT_ONLY + EMPTY:
            self.fail("invalid_ssml", f"<{parent}> may hold only text, not <{name}>")
        attrs = {(_local(k) if not k.startswith(XML_NS) else k[len(XML_NS):]): v for k, v in attrs.items()}
        unknown = sorted(set(attrs) - ATTRIBUTES[name])
        if unknown:
            allowed = ", ".join(sorted(ATTRIBUTES[name])) or "none"
            self.fail("unsupported_ssml", f"<{name}> has no attribute {unknown[0]!r}; it takes: {allowed}")
        prosody = self.stack[-1][1] if self.stack else Prosody()
        try:
            prosody = self._open(name, attrs, prosody)
        except ValueError as exc:
            self.fail("invalid_ssml", f"<{name}> {exc}")
        self.stack.append((name, prosody, attrs | {"_text": []}))

    def _open(self, name: str, attrs: dict, prosody: Prosody) -> Prosody:
        if name == "prosody":
            ratios = {}
            for attr, words in (("rate", RATE_WORDS), ("pitch", PITCH_WORDS), ("volume", VOLUME_WORDS)):
                if attr in attrs:
                    units = {"pitch": ("st", "Hz"), "volume": ("dB",)}.get(attr, ())
                    ratios[attr] = ratio(attrs[attr], words, attr, units)
            return prosody.times(**ratios)
        if name == "emphasis":
            level = attrs.get("level", "moderate")
            if level not in EMPHASIS:
                raise ValueError(f"level={level!r}: use one of {', '.join(EMPHASIS)}")
            return prosody.times(**EMPHASIS[level])
        if name == "break":
            strength = attrs.get("strength", "medium")
            if strength not in BREAK_STRENGTHS:
                raise ValueError(f"strength={strength!r}: use one of {', '.join(BREAK_STRENGTHS)}")
            seconds = break_seconds(attrs["time"]) if "time" in attrs else None
            self.doc.items.append(Break(seconds, strength))
        elif name == "mark":
            if not attrs.get("name"):
                raise ValueError("needs a name")
            self.doc.items.append(Mark(attrs["name"]))
        elif name == "say-as":
            kind = attrs.get("interpret-as")
            if kind not in INTERPRET_AS:
                raise ValueError(f"interpret-as={kind!r}: use one of {', '.join(INTERPRET_AS)}")
            fmt = attrs.get("format")
            if kind == "date" and fmt is not None and fmt not in DATE_FORMATS:
                raise ValueError(f"format={fmt!r}: a date format is one of {', '.join(DATE_FORMATS)}")
        elif name == "phoneme":
            if attrs.get("alphabet") not in PINYIN_ALPHABETS:
                raise ValueError(f"alphabet={attrs.get('alphabet')!r}: voxq reads tone-numbered pinyin: "
                                 'alphabet="py"')
            if not attrs.get("ph", "").strip():
                raise ValueError("needs ph, e.g. ph=\"hang2 zhang3\"")
            try:
                syllables(attrs["ph"])
            except PinyinError as exc:
                raise ValueError(f"ph: {exc}") from None
        elif name == "sub":
            if not attrs.get("alias", "").strip():
                raise ValueError("needs a non-empty alias")
        return prosody

    def data(self, text: str):
        if not self.stack:
            return
        start = self.positions.char(self.parser.parser.CurrentByteIndex)
        doc = self.document
        if doc.startswith("&", start):
            # An entity or character reference (&amp; &#x4e2d;): the whole reference is the source.
            spans = [(start, doc.find(";", start) + 1)] * len(text)
        elif doc.startswith(text, start):
            spans = [(start + i, start + i + 1) for i in range(len(text))]
        else:  # CDATA, or line ends the parser folded: as close as the parser lets us tell
            spans = [(min(start + i, len(doc) - 1), min(start + i + 1, len(doc))) for i in range(len(text))]
        name, prosody, state = self.stack[-1]
        if name in EMPTY:
            if text.strip():
                self.fail("invalid_ssml", f"<{name}> must be empty")
            return
        if name in TEXT_ONLY:
            state["_text"].append((text, spans))
            return
        self.doc.items.append(Run(text, spans, prosody))

    def end(self, tag: str):
        name, prosody, state = self.stack.pop()
        if name in TEXT_ONLY:
            text = "".join(t for t, _ in state["_text"])
            spans = [s for _, ss in state["_text"] for s in ss]
            if not text.strip():
                self.fail("invalid_ssml", f"<{name}> needs text")
            if name == "say-as":
                self.doc.items.append(Run(text, spans, prosody, "say-as", state["interpret-as"], state.get("format")))
            elif name == "sub":
                whole = (spans[0][0], spans[-1][1])
                alias = state["alias"]
                self.doc.items.append(Run(alias, [whole] * len(alias), prosody, "sub"))
            else:
                self._phoneme(text, spans, prosody, syllables(state["ph"]))
        elif name in ("s", "p"):
            self.doc.items.append(SentenceEnd())

    def _phoneme(self, text: str, spans, prosody: Prosody, readings: list[str]):
        # One syllable per character that is spoken; spaces around the text are no characters.
        kept = [(c, s) for c, s in zip(text, spans) if not c.isspace()]
        if len(kept) != len(readings):
            self.fail("invalid_ssml", f"<phoneme> has {len(readings)} syllable(s) for {len(kept)} "
                                      f"character(s) of {text.strip()!r}: give one per character")
        bad = [c for c, _ in kept if not ("\u3400" <= c <= "\u9fff")]
        if bad:
            self.fail("invalid_ssml", f"<phoneme> reads Chinese characters only, not {bad[0]!r}: "
                                      "use <sub alias> for other text")
        self.doc.items.append(Run("".join(c for c, _ in kept), [s for _, s in kept], prosody, "phoneme",
                                  pinyin=readings))

    def close(self) -> Document:
        return self.doc


def parse(document: str) -> Document:
    """The document's runs, breaks, marks and sentence ends; raises SsmlError (with line and
    column where the parser knows them) for anything voxq will not speak."""
    if not document.lstrip().startswith("<"):
        # Plain text sent as SSML: say so, rather than the XML parser's "syntax error".
        raise SsmlError("malformed_ssml", "the text is not an SSML document: SSML starts with <speak> (send "
                        "text_type \"text\" to speak plain text)", 1, 1)
    builder = _Builder(document)
    # Entities are never expanded and nothing external is fetched: a document that declares any
    # entity (a billion laughs) or references an external one is refused outright.
    parser = DefusedXMLParser(target=builder, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    builder.parser = parser
    # One data event per piece of text, so each piece is found where the parser read it.
    parser.parser.buffer_text = False
    try:
        parser.feed(document)
        return parser.close()
    except SsmlError:
        raise
    except defusedxml.EntitiesForbidden as exc:
        line, column = builder.where()
        if exc.sysid or exc.pubid:
            raise SsmlError("forbidden_xml", f"external entity {exc.name!r} ({exc.sysid or exc.pubid}) is not "
                                             "allowed", line, column) from None
        raise SsmlError("forbidden_xml", f"entity declarations are not allowed (entity {exc.name!r})",
                        line, column) from None
    except defusedxml.ExternalReferenceForbidden as exc:
        line, column = builder.where()
        raise SsmlError("forbidden_xml", f"external references are not allowed ({exc.sysid})", line, column) from None
    except defusedxml.DTDForbidden:
        line, column = builder.where()
        raise SsmlError("forbidden_xml", "document type declarations are not allowed", line, column) from None
    except ParseError as exc:
        line, column = exc.position
        message = str(exc).split(":")[0]
        raise SsmlError("malformed_ssml", f"SSML is not well-formed XML: {message}", line, column + 1) from None
