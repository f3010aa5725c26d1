"""Sentence-level subtitles (SRT and WebVTT) from a job's timing marks and the text the user sent.

Each sentence entry of the marks is a cue, showing what the user wrote for it (2023, not 二零二三;
for SSML, the text without its markup). A sentence longer than `max_chars` is split into cues
at its characters' own times, after punctuation where there is some. Both formats are a few lines
of text: they are written here, and the tests read them back with the srt and webvtt-py parsers.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass

TAG = re.compile(r"<[^>]*>")
BREAK_AFTER = "，。！？；：、,.!?;: "
FORMATS = ("srt", "vtt")


@dataclass
class Cue:
    start_ms: float
    end_ms: float
    text: str


def _shown(source: str | None, start: int | None, end: int | None, fallback: str, ssml: bool) -> str:
    if source is None or start is None or end is None:
        return fallback
    text = source[start:end]
    if ssml:
        text = html.unescape(TAG.sub("", text))
    return " ".join(text.split()) or fallback


def cues(marks: list[dict], source: str | None, max_chars: int, ssml: bool = False) -> list[Cue]:
    """One cue per sentence, or several for a long one."""
    found: list[Cue] = []
    sentences: list[tuple[dict, list[dict]]] = []
    for entry in marks:
        if entry.get("type") == "sentence":
            sentences.append((entry, []))
        elif entry.get("type") == "char" and sentences:
            sentences[-1][1].append(entry)
    for sentence, chars in sentences:
        text = _shown(source, sentence.get("start"), sentence.get("end"), sentence["value"], ssml)
        if len(text) <= max_chars or not chars or "start" not in chars[0]:
            found.append(Cue(sentence["start_ms"], sentence["end_ms"], text))
            continue
        found.extend(_split(sentence, chars, source, max_chars, ssml))
    return [cue for cue in found if cue.text]


def _split(sentence: dict, chars: list[dict], source: str, max_chars: int, ssml: bool) -> list[Cue]:
    groups: list[list[dict]] = [[]]
    for char in chars:
        group = groups[-1]
        if group and char["end"] - group[0]["start"] > max_chars:
            # Cut after the last punctuation in the group if there is some, else here.
            cut = next((i for i in range(len(group) - 1, 0, -1)
                        if any(p in source[group[i - 1]["end"]:group[i]["start"]] for p in BREAK_AFTER)),
                       len(group))
            groups[-1], rest = group[:cut], group[cut:]
            groups.append(rest)
        groups[-1].append(char)
    result = []
    for i, group in enumerate(groups):
        if not group:
            continue
        start = group[0]["start"] if i else sentence.get("start", group[0]["start"])
        end = groups[i + 1][0]["start"] if i + 1 < len(groups) and groups[i + 1] else sentence.get("end")
        start_ms = sentence["start_ms"] if i == 0 else group[0]["start_ms"]
        end_ms = sentence["end_ms"] if i == len(groups) - 1 else group[-1]["end_ms"]
        result.append(Cue(start_ms, end_ms, _shown(source, start, end, "".join(c["value"] for c in group), ssml)))
    return result


def _clock(ms: float, separator: str) -> str:
    ms = max(0, int(round(ms)))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    seconds, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{ms:03d}"


def srt(found: list[Cue]) -> str:
    return "".join(f"{n}\n{_clock(c.start_ms, ',')} --> {_clock(c.end_ms, ',')}\n{c.text}\n\n"
                   for n, c in enumerate(found, 1))


def vtt(found: list[Cue]) -> str:
    # "-->" may not appear in a cue's text; the user's text could hold it.
    return "WEBVTT\n\n" + "".join(
        f"{n}\n{_clock(c.start_ms, '.')} --> {_clock(c.end_ms, '.')}\n{c.text.replace('-->', '->')}\n\n"
        for n, c in enumerate(found, 1))


def render(marks: list[dict], source: str | None, fmt: str, max_chars: int, ssml: bool = False) -> str:
    found = cues(marks, source, max_chars, ssml)
    return srt(found) if fmt == "srt" else vtt(found)
