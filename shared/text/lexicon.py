"""Pronunciation lexicons: W3C PLS (as Polly and Azure take it) or a small JSON form, parsed and
checked entry by entry, and applied to text before normalisation.

A lexeme maps a grapheme either to pinyin (one tone-numbered syllable per Chinese character:
行长 -> hang2 zhang3) or to an alias, text read instead (iPhone -> 爱疯, WHO -> 世界卫生组织).
Latin graphemes match whole words, case-insensitively. The longest grapheme wins; between
lexicons with the same grapheme, the one named first.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Sequence

import defusedxml
from defusedxml.ElementTree import ParseError, fromstring

from shared.text.normalizer import Aligned
from shared.text.pinyin import LEXICON, PinyinError, syllables

PLS_NS = "{http://www.w3.org/2005/01/pronunciation-lexicon}"
ALPHABETS = ("py", "pinyin", "x-amazon-pinyin", "x-pinyin")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_GRAPHEME = 64
MAX_ALIAS = 256
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")
LATIN_EDGE = re.compile(r"[A-Za-z0-9]")


class LexiconError(ValueError):
    """The lexicon cannot be used; the message names the entry and what is wrong with it."""


@dataclass(frozen=True)
class Entry:
    grapheme: str
    phoneme: tuple[str, ...] | None = None
    alias: str | None = None

    def to_json(self) -> dict:
        if self.phoneme:
            return {"grapheme": self.grapheme, "phoneme": " ".join(self.phoneme)}
        return {"grapheme": self.grapheme, "alias": self.alias}


@dataclass(frozen=True)
class Lexicon:
    name: str
    entries: tuple[Entry, ...]
    sha256: str  # of the content as stored: part of every cache key that used it

    @classmethod
    def from_entries(cls, name: str, entries: Sequence[dict], sha256: str) -> "Lexicon":
        return cls(name, tuple(_entry(e, i) for i, e in enumerate(entries, 1)), sha256)

    @classmethod
    def from_stored(cls, name: str, record: dict) -> "Lexicon":
        """A lexicon as shared/store/lexicons.py keeps it (see `stored`)."""
        return cls.from_entries(name, record["entries"], record["sha256"])


class UnknownLexicon(LexiconError):
    """A request names a lexicon the tenant does not have."""


def stored(content: str, fmt: str, entries: list[dict], updated_at: str) -> dict:
    """What the store keeps for a lexicon: the content as sent (GET returns it), and the checked
    entries, so a worker never parses it again."""
    return {"content": content, "format": fmt, "entries": entries, "sha256": content_hash(content),
            "updated_at": updated_at}


def resolve(names: Sequence[str], records: Sequence[dict | None]) -> "Lexicons":
    """The named lexicons from their stored records (None where missing: UnknownLexicon)."""
    missing = [name for name, record in zip(names, records) if record is None]
    if missing:
        raise UnknownLexicon(f"no lexicon named {missing[0]!r}")
    return Lexicons([Lexicon.from_stored(name, record) for name, record in zip(names, records)])


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def _entry(raw: dict, number: int) -> Entry:
    grapheme = str(raw.get("grapheme") or "").strip()
    where = f"entry {number}" + (f" ({grapheme!r})" if grapheme else "")
    phoneme, alias = raw.get("phoneme"), raw.get("alias")
    if not grapheme:
        raise LexiconError(f"{where}: needs a grapheme")
    if len(grapheme) > MAX_GRAPHEME:
        raise LexiconError(f"{where}: the grapheme is longer than {MAX_GRAPHEME} characters")
    if (phoneme is None) == (alias is None):
        raise LexiconError(f"{where}: needs exactly one of phoneme (pinyin) or alias")
    if alias is not None:
        alias = str(alias).strip()
        if not alias or len(alias) > MAX_ALIAS:
            raise LexiconError(f"{where}: the alias must be 1 to {MAX_ALIAS} characters")
        return Entry(grapheme, alias=alias)
    if not CJK.fullmatch(grapheme):
        raise LexiconError(f"{where}: pinyin is for Chinese characters only; give other words an alias")
    try:
        readings = syllables(str(phoneme))
    except PinyinError as exc:
        raise LexiconError(f"{where}: {exc}") from None
    if len(readings) != len(grapheme):
        raise LexiconError(f"{where}: {len(readings)} syllable(s) for {len(grapheme)} character(s): "
                           "give one per character")
    return Entry(grapheme, phoneme=tuple(readings))


def parse(content: str, max_entries: int) -> list[dict]:
    """PLS (XML) or JSON content to entries as dicts; raises LexiconError."""
    stripped = content.lstrip()
    if stripped.startswith(("{", "[")):
        entries = _parse_json(stripped)
    elif stripped.startswith("<"):
        entries = _parse_pls(content)
    else:
        raise LexiconError("a lexicon is W3C PLS (XML) or JSON ({\"entries\": [...]})")
    if not entries:
        raise LexiconError("the lexicon has no entries")
    if len(entries) > max_entries:
        raise LexiconError(f"the lexicon has {len(entries)} entries; the limit is {max_entries}")
    checked, seen = [], set()
    for number, raw in enumerate(entries, 1):
        entry = _entry(raw, number)
        key = _key(entry.grapheme)
        if key in seen:
            raise LexiconError(f"entry {number} ({entry.grapheme!r}): the grapheme is already in the lexicon")
        seen.add(key)
        checked.append(entry.to_json())
    return checked


def _parse_json(content: str) -> list[dict]:
    try:
        data = json.loads(content)
    except ValueError as exc:
        raise LexiconError(f"the lexicon is not valid JSON: {exc}") from None
    entries = data.get("entries") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise LexiconError('JSON lexicons look like {"entries": [{"grapheme": "行长", "phoneme": "hang2 zhang3"}]}')
    return entries


def _parse_pls(content: str) -> list[dict]:
    try:
        root = fromstring(content, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except (defusedxml.EntitiesForbidden, defusedxml.ExternalReferenceForbidden, defusedxml.DTDForbidden):
        raise LexiconError("entity declarations and external references are not allowed") from None
    except ParseError as exc:
        line, column = exc.position
        raise LexiconError(f"the lexicon is not well-formed XML: {str(exc).split(':')[0]} "
                           f"(line {line}, column {column + 1})") from None
    if root.tag.removeprefix(PLS_NS) != "lexicon":
        raise LexiconError("a PLS document's root element is <lexicon>")
    alphabet = root.get("alphabet", "py")
    entries = []
    for number, lexeme in enumerate(root.iter(f"{PLS_NS}lexeme") if root.tag.startswith(PLS_NS)
                                    else root.iter("lexeme"), 1):
        ns = PLS_NS if lexeme.tag.startswith(PLS_NS) else ""
        graphemes = [g.text or "" for g in lexeme.findall(f"{ns}grapheme")]
        phonemes = lexeme.findall(f"{ns}phoneme")
        aliases = lexeme.findall(f"{ns}alias")
        if not graphemes:
            raise LexiconError(f"lexeme {number}: needs a <grapheme>")
        for phoneme in phonemes[:1]:
            used = phoneme.get("alphabet", alphabet)
            if used not in ALPHABETS:
                raise LexiconError(f"lexeme {number}: alphabet {used!r} is not supported; voxq reads "
                                   f"tone-numbered pinyin (alphabet=\"{ALPHABETS[0]}\")")
        for grapheme in graphemes:
            entry = {"grapheme": grapheme}
            if phonemes:
                entry["phoneme"] = phonemes[0].text or ""
            if aliases:
                entry["alias"] = aliases[0].text or ""
            entries.append(entry)
    return entries


def _key(grapheme: str) -> str:
    return grapheme.lower() if grapheme.isascii() else grapheme


class Lexicons:
    """Several lexicons applied as one, in the order the request named them."""

    def __init__(self, lexicons: Sequence[Lexicon]):
        self.lexicons = list(lexicons)
        self.entries: dict[str, Entry] = {}
        for lexicon in self.lexicons:
            for entry in lexicon.entries:
                self.entries.setdefault(_key(entry.grapheme), entry)  # the first lexicon wins a tie
        self.pattern = self._pattern()

    def _pattern(self) -> re.Pattern | None:
        if not self.entries:
            return None
        alternatives = []
        for entry in sorted(self.entries.values(), key=lambda e: len(e.grapheme), reverse=True):
            text = re.escape(entry.grapheme)
            # A Latin grapheme matches whole words: "app" is no part of "apple".
            if LATIN_EDGE.match(entry.grapheme[0]):
                text = r"(?<![A-Za-z0-9])" + text
            if LATIN_EDGE.match(entry.grapheme[-1]):
                text += r"(?![A-Za-z0-9])"
            alternatives.append(text)
        # Longest first: at any position the regex takes the first alternative that matches.
        return re.compile("|".join(alternatives), re.IGNORECASE)

    @property
    def hashes(self) -> list[str]:
        return [f"{lexicon.name}:{lexicon.sha256}" for lexicon in self.lexicons]

    def lookup(self, text: str) -> Entry:
        return self.entries[_key(text)]

    def apply(self, text: Aligned) -> Aligned:
        """Fix the readings of pinyin entries and replace aliased words, keeping source offsets."""
        if self.pattern is None:
            return text
        tags = list(text.tags)
        for m in self.pattern.finditer(text.text):
            entry = self.lookup(m.group(0))
            if entry.phoneme:
                for i, reading in zip(range(*m.span()), entry.phoneme):
                    tags[i] = tags[i][:2] + (reading, LEXICON) + tags[i][4:]
        fixed = Aligned(text.text, tags, text.trailing_marks)
        return fixed.sub(self.pattern, lambda m: self.lookup(m.group(0)).alias or m.group(0))
