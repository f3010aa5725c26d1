"""Pinyin for normalised text, character by character, with where each reading came from.

Polyphones resolve by jieba word (银行 hang2), 不/一/third-tone sandhi applies across words, and
readings fixed by a lexicon or SSML `phoneme` override all of that. The workers map these
syllables to the voice's symbols (worker/text/g2p.py); the API's text preview shows them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Sequence

from shared.text import polyphones
from shared.text.segmenter import words

PUNCTUATION = re.compile("([，。！？；：、\n]+)")
DIGIT_CHARS = "零一二三四五六七八九"

# Where a character's reading came from, as the preview reports it.
DICTIONARY = "dictionary"  # the character's own reading
WORD = "word"  # the reading inside a jieba word of two or more characters
SANDHI = "sandhi"  # a tone changed by a 不, 一 or third-tone rule
LEXICON = "lexicon"
SSML = "ssml"

# One tone-numbered syllable (5 or nothing is the neutral tone). Checked when a lexicon or SSML
# gives pinyin, so a typo is a 422 at once rather than a syllable the voice silently skips.
SYLLABLE = re.compile(
    r"(?:zh|ch|sh|[bpmfdtnlgkhjqxrzcsyw])?"
    r"(?:iang|iong|uang|ang|eng|ing|ong|ian|iao|uai|uan|van|üan|ai|an|ao|ei|en|er|ia|ie|in|iu|ou|ua|ue|ui|un|uo"
    r"|ve|üe|vn|ün|a|e|i|o|u|v|ü|m|n|ng|hm|hng|ê)[1-5]?"
)


# Phrases pypinyin reads wrongly in everyday text (还钱 is not hai2 qian2): fixed wherever they
# occur, unless a lexicon or SSML says otherwise. A tenant's lexicon is the place for the rest.
PHRASES = {
    "还钱": "huan2 qian2", "还款": "huan2 kuan3", "还贷": "huan2 dai4", "还清": "huan2 qing1",
    "还账": "huan2 zhang4", "还手": "huan2 shou3", "还击": "huan2 ji1",
    # A doctor (大夫 dai4 fu5), not the ancient official; leave (年假 jia4); fastening (系好 ji4);
    # 拨打的 is "dialled", not 打的 "take a taxi".
    "大夫": "dai4 fu5", "年假": "nian2 jia4", "病假": "bing4 jia4", "事假": "shi4 jia4", "婚假": "hun1 jia4",
    "产假": "chan3 jia4", "休假": "xiu1 jia4", "系好": "ji4 hao3", "系上": "ji4 shang4", "系紧": "ji4 jin3",
    "拨打的": "bo1 da3 de5",
    # pypinyin's phrase list has these wrong (majiang1, yuanfen1); 打的去 is taking a taxi.
    "麻将": "ma2 jiang4", "缘分": "yuan2 fen4", "打的去": "da3 di1 qu4", "打的回": "da3 di1 hui2",
    "果实累累": "guo3 shi2 lei2 lei2",
    # 相差 "differ by" (cha1, as 差别), and blood given (xue4, as in every compound: 献血, 验血).
    "相差": "xiang1 cha1", "献血": "xian4 xue4", "验血": "yan4 xue4", "输血": "shu1 xue4",
}


class PinyinError(ValueError):
    """A pinyin string that is no tone-numbered syllable."""


def syllables(pinyin: str) -> list[str]:
    """`"hang2 zhang3"` -> ["hang2", "zhang3"], lower-cased, ü as v, a missing tone as 5; raises
    PinyinError naming the first syllable that is not pinyin."""
    found = []
    for syllable in pinyin.lower().replace("u:", "v").split():
        if not SYLLABLE.fullmatch(syllable):
            raise PinyinError(f"{syllable!r} is not a tone-numbered pinyin syllable (e.g. hang2)")
        syllable = syllable.replace("ü", "v")
        found.append(syllable if syllable[-1].isdigit() else syllable + "5")
    return found


@dataclass
class Syllable:
    char: str
    pinyin: str  # TONE3 with 5 for the neutral tone, e.g. "hao3", "de5"
    index: int  # where the character sits in the text that was read
    word: tuple[int, int]  # (clause, word): the jieba word it belongs to, for prosody breaks
    word_text: str
    last_in_word: bool
    source: str = DICTIONARY

    @property
    def tone(self) -> str:
        return self.pinyin[-1]

    @property
    def fixed(self) -> bool:
        return self.source in (LEXICON, SSML)

    def retone(self, tone: str) -> None:
        if tone != self.tone:
            self.pinyin = self.pinyin[:-1] + tone
            self.source = SANDHI


def tone_marked(syllable: str) -> str:
    """A tone-numbered syllable as people read it: jin1 -> jīn, lv4 -> lǜ, ma5 -> ma (pypinyin's own
    conversion, Style.TONE's spelling)."""
    from pypinyin.contrib.tone_convert import to_tone

    return to_tone(syllable)


@cache
def _pypinyin():
    # Imported on first use: pypinyin loads its phrase dictionary when imported.
    from pypinyin import Style
    from pypinyin.constants import PHRASES_DICT
    from pypinyin.contrib.neutral_tone import NeutralToneWith5Mixin
    from pypinyin.contrib.tone_sandhi import ToneSandhiMixin
    from pypinyin.converter import DefaultConverter
    from pypinyin.core import Pinyin
    from pypinyin.seg.simpleseg import seg

    class Converter(NeutralToneWith5Mixin, ToneSandhiMixin, DefaultConverter):
        pass

    class Citation(NeutralToneWith5Mixin, DefaultConverter):
        """Without sandhi: to tell the preview which tones pypinyin's own rules changed."""

    pinyin = Pinyin(Converter()).pinyin
    citation = Pinyin(Citation()).pinyin

    @lru_cache(maxsize=1 << 16)
    def read(word: str) -> tuple[tuple[str, bool], ...]:
        # pypinyin reads a word missing from its phrase list char by char; its own segmenter
        # finds the phrases inside (中国人民银行 -> 银行 hang2). One placeholder per
        # unreadable character keeps the result aligned with the text. Cached because
        # pypinyin is the slow step and words repeat.
        units = [word] if len(word) == 1 or word in PHRASES_DICT else seg(word)
        readings = pinyin(units, style=Style.TONE3, errors=lambda chars: ["?"] * len(chars))
        plain = citation(units, style=Style.TONE3, errors=lambda chars: ["?"] * len(chars))
        return tuple((r[0], r[0] != p[0]) for r, p in zip(readings, plain, strict=True))

    return read


def _clause(clause: str, clause_no: int, offset: int, fixed: Sequence, fixed_from: Sequence) -> list[Syllable]:
    """Pinyin by word, so polyphones resolve in context and sandhi applies within words."""
    read = _pypinyin()
    found, at = [], offset
    clause_words = words(clause)
    for n, word in enumerate(clause_words):
        for i, (char, (reading, changed)) in enumerate(zip(word, read(word), strict=True)):
            syl = Syllable(char, reading, at + i, (clause_no, n), word, i == len(word) - 1,
                           SANDHI if changed else WORD if len(word) > 1 else DICTIONARY)
            if fixed and fixed[at + i]:
                syl.pinyin, syl.source = fixed[at + i], fixed_from[at + i] or SSML
            found.append(syl)
        at += len(word)
    # Context rules first, so that a phrase's own reading (还清, 系好) has the last word.
    for i, reading in polyphones.readings(clause, clause_words).items():
        if not found[i].fixed:
            found[i].pinyin, found[i].source = reading, WORD
    for phrase, readings in PHRASES.items():
        start = clause.find(phrase)
        while start >= 0:
            for syl, reading in zip(found[start:start + len(phrase)], readings.split()):
                if not syl.fixed:
                    syl.pinyin, syl.source = reading, WORD
            start = clause.find(phrase, start + len(phrase))
    return found


def _sandhi(syllables: list[Syllable]) -> None:
    """不, 一 and third-tone sandhi across the pieces pypinyin read one at a time."""
    # pypinyin's phrase list lacks most words (统一, 不去), so its own rules, which stop at the
    # edge of each piece, miss them. Right to left, so a syllable sees its neighbour's final
    # tone. A reading a lexicon or SSML fixed is never changed, but its tone still counts.
    for i in reversed(range(len(syllables) - 1)):
        syl, nxt = syllables[i], syllables[i + 1]
        prev = syllables[i - 1] if i else None
        if syl.fixed:
            continue
        if syl.char in "不一" and syl.tone != "5":
            if syl.char == "一" and (
                nxt.char in DIGIT_CHARS + "月" or (prev and prev.char in DIGIT_CHARS + "十第月")
            ):
                syl.retone("1")  # read as a number: 一九九八, 十一, 第一天, 一月一日
            elif syl.last_in_word and len(syl.word_text) > 1:
                syl.retone("1" if syl.char == "一" else "4")  # 统一, 唯一, 要不
            elif prev is not None and prev.char == nxt.char:
                syl.retone("5")  # 看一看, 好不好
            else:
                syl.retone("2" if nxt.tone == "4" else "4")
        elif syl.tone == "3" and nxt.tone == "3":
            syl.retone("2")


def read(text: str, fixed: Sequence[str | None] | None = None,
         fixed_from: Sequence[str | None] | None = None) -> list[Syllable]:
    """Every character of `text` outside punctuation, with its reading. `fixed` (one entry per
    character of `text`, None where free) gives readings that win over the dictionary and the
    sandhi rules; `fixed_from` says whose they are (LEXICON or SSML)."""
    if fixed is not None and len(fixed) != len(text):
        raise ValueError(f"{len(fixed)} fixed readings for {len(text)} characters")
    fixed_from = fixed_from or [None] * len(text)
    found: list[Syllable] = []
    offset = 0
    for clause_no, part in enumerate(PUNCTUATION.split(text)):
        if part and not PUNCTUATION.fullmatch(part):
            syllables = _clause(part, clause_no, offset, fixed or (), fixed_from)
            _sandhi(syllables)
            found.extend(syllables)
        offset += len(part)
    return found
