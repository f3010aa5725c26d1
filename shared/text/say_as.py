"""SSML say-as readings: how a run of text is read when the document says what it is."""
from __future__ import annotations

import re

from shared.text import normalizer as n

NUMBERS = re.compile(r"\d+", re.ASCII)


def _cardinal(text: str) -> str | None:
    m = re.fullmatch(r"\s*([+-]?)(\d[\d,]*(?:\.\d+)?)\s*", text, re.ASCII)
    if not m:
        return None
    return ("负" if m.group(1) == "-" else "") + n._number(m.group(2).replace(",", ""))


def _digits(text: str) -> str:
    return "".join(c.translate(n.DIGITS) for c in text if c.isdigit())


def _telephone(text: str) -> str:
    # Said to be written down: 1 is 幺, + is 加, separators are not read.
    return ("加" if text.strip().startswith("+") else "") + n._code("".join(c for c in text if c.isdigit()))


def _date(text: str, fmt: str | None) -> str | None:
    parts = NUMBERS.findall(text)
    fmt = fmt or "ymd"[: len(parts)]
    if len(parts) != len(fmt):
        return None
    spoken = ""
    for field in "ymd":  # Chinese reads year, month, day, whatever order they were written in
        if field in fmt:
            value = parts[fmt.index(field)]
            spoken += value.translate(n.DIGITS) + "年" if field == "y" else n._number(value) + (
                "月" if field == "m" else "日")
    return spoken


def _time(text: str) -> str | None:
    m = n.TIME.search(text)
    return n._time(m) if m else None


def _characters(text: str) -> str:
    spoken = []
    for c in text:
        if c.isdigit() and c.isascii():
            spoken.append(c.translate(n.DIGITS))
        elif c.isascii() and c.isalpha():
            spoken.append(n.LETTERS[c.lower()])
        elif "\u3400" <= c <= "\u9fff":
            spoken.append(c)
        elif c in n.URL_SYMBOLS:
            spoken.append(n.URL_SYMBOLS[c])
    return "".join(spoken)


def _currency(text: str) -> str | None:
    m = n.CURRENCY.search(text) or n.CURRENCY_AFTER.search(text)
    if m and m.re is n.CURRENCY:
        return n.normalize(n._currency(m))
    if m:
        return n._number(m.group(1)) + n.ISO_CURRENCIES[m.group(2)]
    amount = _cardinal(text)
    return amount + "元" if amount else None


def reading(text: str, interpret_as: str, fmt: str | None = None) -> str:
    """What to say for `text` interpreted as `interpret_as`; text that does not fit (a date with
    no numbers) is read as ordinary text, as Azure and Polly do."""
    spoken = {
        "cardinal": _cardinal, "number": _cardinal, "digits": _digits, "telephone": _telephone,
        "time": _time, "characters": _characters, "spell-out": _characters, "currency": _currency,
        "ordinal": lambda t: "第" + c if (c := _cardinal(t)) else None,
        "date": lambda t: _date(t, fmt),
    }[interpret_as](text)
    return spoken if spoken else text
