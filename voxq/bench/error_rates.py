"""How far what was heard (or what the front end planned to say) is from what should have been said:
syllable error rate with tones, character error rate, and which syllables differ."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
# A number as the listener writes it: digits and what joins their parts (1,280.5 14:25 400-800-1234).
WRITTEN = re.compile(r"\d+(?:[,.:\-/ ]\d+)*")
CLOCK = re.compile(r"(\d{1,2})[.:](\d{2})")
DIGITS = str.maketrans("0123456789", "零一二三四五六七八九")
# What a written digit may have been said as beyond its character: 1 is 幺 in a code, 2 is 两
# before a measure word. Whisper writes 1 and 2 for both; the digit does not tell which was said.
SAID_ALSO = {"一": frozenset({"yao1"}), "幺": frozenset({"yi1"}), "二": frozenset({"liang3"}),
             "两": frozenset({"er4"})}
# Readings tried per transcript at most (each written number has two to four); past this, each
# number gets the same kind of reading.
MAX_READINGS = 64
# A run of Chinese numerals, in an old --json that kept only the normalised transcript.
NUMERALS = re.compile(r"[零〇一二两三四五六七八九十百千万亿幺]+(?:点[零〇一二两三四五六七八九幺]+)?")
UNIT_NUMERALS = re.compile(r"[十百千万亿]")
NUMERAL_CHARS = frozenset("零〇一二两三四五六七八九十百千万亿幺点")
# A character and, optionally, the reading it must have: 还[huan2].
MARKED = re.compile(r"([\u3400-\u4dbf\u4e00-\u9fff])(?:\[([a-zü]+[1-5])\])?")


@dataclass
class Expected:
    """What a careful speaker says for one corpus sentence: its characters and their syllables."""

    text: str  # what the user sends
    chars: str  # what is said, Chinese characters only
    syllables: list[str]


@dataclass
class Score:
    """One sentence heard: errors against the expected syllables and characters."""

    syllable_errors: int
    syllables: int
    char_errors: int
    chars: int
    heard: str  # the characters compared: the transcript with its numbers read (see score)
    differences: list[str] = field(default_factory=list)  # "调 tiao2→diao4 (掉)"
    transcript: str = ""  # what the listener wrote, digits and all

    @property
    def ser(self) -> float:
        return self.syllable_errors / max(1, self.syllables)


@dataclass
class Hearing:
    """One way to read a transcript aloud: its characters, and which of them stand for something
    the listener wrote as digits or symbols (the listener chose no character there)."""

    chars: str
    written: tuple[bool, ...]


@cache
def _pypinyin():
    from pypinyin import Style, lazy_pinyin, pinyin

    def read(chars: str) -> list[str]:
        # pypinyin's phrase list picks a polyphone's reading in its word, as it does for the front end.
        return lazy_pinyin(chars, style=Style.TONE3, neutral_tone_with_five=True)

    @cache
    def could_be(char: str) -> frozenset[str]:
        return frozenset(pinyin(char, style=Style.TONE3, heteronym=True, neutral_tone_with_five=True)[0])

    return read, could_be


def expected(text: str, reading: str | None) -> Expected:
    """The corpus line's expected syllables: pypinyin on the reading (the text itself when no
    reading is given), with the readings the corpus marks winning."""
    read, _ = _pypinyin()
    reading = reading or text
    chars, marks = [], []
    for m in MARKED.finditer(reading):
        chars.append(m.group(1))
        marks.append(m.group(2))
    syllables = read("".join(chars))
    return Expected(text, "".join(chars), [mark or syl for syl, mark in zip(syllables, marks, strict=True)])


def _hearing(transcript: str, replaced: dict[tuple[int, int], str]) -> Hearing:
    """`transcript` with some written numbers replaced by the given characters, then the rest
    read by the front end's rules; only Chinese characters remain."""
    from shared.text.normalizer import Aligned, normalize_aligned

    pieces, written, last = [], [], 0
    for (start, end), chars in sorted(replaced.items()):
        pieces.append(transcript[last:start])
        written += [False] * (start - last)
        pieces.append(chars)
        written += [True] * len(chars)
        last = end
    pieces.append(transcript[last:])
    written += [False] * (len(transcript) - last)
    text = "".join(pieces)
    read = normalize_aligned(Aligned.plain(text))
    chars, flags = [], []
    for char, (start, end, *_rest) in zip(read.text, read.tags):
        if CJK.match(char):
            chars.append(char)
            # A character the rules wrote (from digits, letters, symbols) is not the listener's.
            flags.append(any(written[start:end]) or text[start:end] != char)
    return Hearing("".join(chars), tuple(flags))


def readings(transcript: str) -> list[Hearing]:
    """The ways the transcript's written numbers can be said: the front end's reading in context,
    the number alone (an amount: 120 一百二十), digit by digit (482916 四八二九一六), and a time
    of day where it looks like one (14.25 十四点二十五). Whisper writes 482916 whether it heard a
    code or an amount, and 4829165 for 四八二九幺六，五, so which reading the voice used is not in
    the transcript: the scorer takes the one the expected reading has. Every reading says the
    digits the listener wrote, so a wrong digit stays wrong."""
    from itertools import product
    from math import prod

    from shared.text.normalizer import normalize

    runs = [m.span() for m in WRITTEN.finditer(transcript)]
    options = []
    for start, end in runs:
        run = transcript[start:end]
        choices = [None, "".join(CJK.findall(normalize(run))), re.sub(r"\D", "", run).translate(DIGITS)]
        if clock := CLOCK.fullmatch(run):
            # Whisper writes 十四点二十五 as 14.25 as often as 14:25.
            choices.append("".join(CJK.findall(normalize(f"{clock.group(1)}点{clock.group(2)}"))))
        options.append(list(dict.fromkeys(choices)))
    combos = list(product(*options)) if prod(map(len, options)) <= MAX_READINGS else [
        tuple(choices[min(k, len(choices) - 1)] for choices in options) for k in range(4)]
    found = {}
    for combo in combos:
        hearing = _hearing(transcript, {span: chars for span, chars in zip(runs, combo) if chars is not None})
        found.setdefault((hearing.chars, hearing.written), hearing)
    return list(found.values())


def written_again(heard: str) -> str:
    """An old --json's normalised transcript with its runs of numerals written as digits again
    (四百八十二万九千一百六十五 -> 4829165, 七八五六三四幺二 -> 78563412): those runs were
    mostly digits the listener wrote, which the old scorer read as amounts. An approximation
    for rescoring old runs; a new run keeps the transcript itself."""
    import cn2an

    def digits(numerals: str) -> str:
        if UNIT_NUMERALS.search(numerals):
            return str(cn2an.cn2an(numerals, "normal"))
        return numerals.translate(str.maketrans("零〇一二两三四五六七八九幺", "0012234567891"))

    def write(m: re.Match) -> str:
        run = m.group(0)
        if len(run) < 2:
            return run
        whole, _, fraction = run.partition("点")
        try:
            return digits(whole) + ("." + digits(fraction) if fraction else "")
        except ValueError:
            return run

    return NUMERALS.sub(write, heard)


def score(want: Expected, transcript: str) -> Score:
    """Syllable errors with tones (substitutions, deletions, insertions, over the expected count)
    and character errors, for the reading of the transcript's written numbers that is nearest
    the expected one (see readings). A syllable counts as heard right when the character the
    listener wrote can be read that way: 还 written for huan2 is its spelling choice, not a
    mishearing; so is 1 written for 幺."""
    best = None
    for hearing in readings(transcript):
        found = _score(want, hearing)
        if best is None or (found.syllable_errors, found.char_errors) < (best.syllable_errors, best.char_errors):
            best = found
    best.transcript = transcript
    return best


def _score(want: Expected, hearing: Hearing) -> Score:
    import jiwer

    read, could_be = _pypinyin()
    chars = hearing.chars
    accept = [could_be(char) | (SAID_ALSO.get(char, frozenset()) if written else frozenset())
              for char, written in zip(chars, hearing.written)]
    got = read(chars) if chars else []
    # A polyphone the listener wrote is read the way the sentence needs, where it can be (还 in
    # 日还款 as huan2, not pypinyin's hai2), before aligning: else the aligner pairs it elsewhere.
    meant = set(want.syllables)
    got = [syl if syl in meant else min(ok & meant, default=syl) for syl, ok in zip(got, accept)]
    # The characters for the character error rate: a numeral the front end wrote for a digit is
    # spelt as the expected reading has it where it says the same (1 read 一 for 幺); 15 written
    # for 时五 is still a wrong character.
    spelt = list(chars)
    errors, differences = 0, []
    if want.syllables and got:
        alignment = jiwer.process_words(" ".join(want.syllables), " ".join(got)).alignments[0]
        for chunk in alignment:
            if chunk.type in ("equal", "substitute"):
                for i, j in zip(range(chunk.ref_start_idx, chunk.ref_end_idx),
                                range(chunk.hyp_start_idx, chunk.hyp_end_idx)):
                    if chunk.type == "substitute" and want.syllables[i] not in accept[j]:
                        errors += 1
                        differences.append(f"{want.chars[i]} {want.syllables[i]}→{got[j]} ({chars[j]})")
                    elif hearing.written[j] and want.chars[i] in NUMERAL_CHARS:
                        spelt[j] = want.chars[i]
            elif chunk.type == "delete":
                errors += chunk.ref_end_idx - chunk.ref_start_idx
                differences.append(f"{want.chars[chunk.ref_start_idx:chunk.ref_end_idx]} not heard")
            else:
                errors += chunk.hyp_end_idx - chunk.hyp_start_idx
                differences.append(f"{chars[chunk.hyp_start_idx:chunk.hyp_end_idx]} heard in addition")
    else:
        errors = max(len(want.syllables), len(got))
    spelt = "".join(spelt)
    char_errors = round(jiwer.cer(want.chars, spelt) * len(want.chars)) if spelt else len(want.chars)
    return Score(errors, len(want.syllables), char_errors, len(want.chars), chars, differences)


def front_end_misreadings(want: Expected, planned: list[tuple[str, str, bool]]) -> list[str]:
    """Where the front end's plan (character, pinyin, whether a tone rule changed it) differs from
    the expected reading: a misreading no voice can fix. A tone a sandhi rule changed is what a
    speaker does too (你好 ni2 hao3), so only its syllable is compared."""
    import jiwer

    if not planned:
        return [f"{want.chars} not planned"]
    plain = [p[:-1] for _, p, _ in planned]
    alignment = jiwer.process_words(" ".join(s[:-1] for s in want.syllables), " ".join(plain)).alignments[0]
    found = []
    for chunk in alignment:
        if chunk.type == "equal":
            for i, j in zip(range(chunk.ref_start_idx, chunk.ref_end_idx),
                            range(chunk.hyp_start_idx, chunk.hyp_end_idx)):
                char, reading, sandhi = planned[j]
                if reading != want.syllables[i] and not sandhi:
                    found.append(f"{char} {want.syllables[i]}→{reading}")
        elif chunk.type == "substitute":
            for i, j in zip(range(chunk.ref_start_idx, chunk.ref_end_idx),
                            range(chunk.hyp_start_idx, chunk.hyp_end_idx)):
                found.append(f"{want.chars[i]} {want.syllables[i]}→{planned[j][1]} ({planned[j][0]})")
        elif chunk.type == "delete":
            found.append(f"{want.chars[chunk.ref_start_idx:chunk.ref_end_idx]} not planned")
        else:
            found.append("".join(p[0] for p in planned[chunk.hyp_start_idx:chunk.hyp_end_idx]) + " planned in addition")
    return found


def count(misreadings: list[str]) -> int:
    """Syllables a list of differences covers (a whole run not planned or added counts each)."""
    total = 0
    for item in misreadings:
        if item.endswith(("not planned", "not heard", "in addition")):
            total += len(item.split()[0])
        else:
            total += 1
    return total
