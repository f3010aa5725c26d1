"""How far what was heard (or what the front end planned to say) is from what should have been said:
syllable error rate with tones, character error rate, and which syllables differ."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
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
    heard: str
    differences: list[str] = field(default_factory=list)  # "调 tiao2→diao4 (掉)"

    @property
    def ser(self) -> float:
        return self.syllable_errors / max(1, self.syllables)


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


def heard_chars(transcript: str) -> str:
    """The listener's transcript as characters to compare: its digits and symbols read by the
    front end's own rules (Whisper writes 3月15日 for 三月十五日: a way of writing, not an error),
    then only the Chinese characters."""
    from shared.text.normalizer import normalize

    return "".join(CJK.findall(normalize(transcript)))


def score(want: Expected, transcript: str) -> Score:
    """Syllable errors with tones (substitutions, deletions, insertions, over the expected count)
    and character errors. A syllable counts as heard right when the character the listener wrote
    can be read that way: 还 written for huan2 is its spelling choice, not a mishearing."""
    import jiwer

    read, could_be = _pypinyin()
    chars = heard_chars(transcript)
    got = read(chars) if chars else []
    # A polyphone the listener wrote is read the way the sentence needs, where it can be (还 in
    # 日还款 as huan2, not pypinyin's hai2), before aligning: else the aligner pairs it elsewhere.
    meant = set(want.syllables)
    got = [syl if syl in meant else min(could_be(char) & meant, default=syl) for syl, char in zip(got, chars)]
    errors, differences = 0, []
    if want.syllables and got:
        alignment = jiwer.process_words(" ".join(want.syllables), " ".join(got)).alignments[0]
        for chunk in alignment:
            if chunk.type == "equal":
                continue
            if chunk.type == "substitute":
                for i, j in zip(range(chunk.ref_start_idx, chunk.ref_end_idx),
                                range(chunk.hyp_start_idx, chunk.hyp_end_idx)):
                    if want.syllables[i] not in could_be(chars[j]):
                        errors += 1
                        differences.append(f"{want.chars[i]} {want.syllables[i]}→{got[j]} ({chars[j]})")
            elif chunk.type == "delete":
                errors += chunk.ref_end_idx - chunk.ref_start_idx
                differences.append(f"{want.chars[chunk.ref_start_idx:chunk.ref_end_idx]} not heard")
            else:
                errors += chunk.hyp_end_idx - chunk.hyp_start_idx
                differences.append(f"{chars[chunk.hyp_start_idx:chunk.hyp_end_idx]} heard in addition")
    else:
        errors = max(len(want.syllables), len(got))
    char_errors = round(jiwer.cer(want.chars, chars) * len(want.chars)) if chars else len(want.chars)
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
