"""Grapheme-to-phoneme: one segment of normalised text to the Baker voice's symbols and ids."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cache, lru_cache

from worker.text.segmenter import words

logger = logging.getLogger(__name__)

PUNCTUATION = re.compile("([，。！？；：、\n]+)")
DIGIT_CHARS = "零一二三四五六七八九"
# pypinyin spells some interjections with syllabic nasals the Baker set lacks.
ALIASES = {"n": "en", "m": "mu", "hm": "hen", "hng": "heng", "ê": "ei"}
# Words where 儿 means child and keeps its own syllable instead of rhotacising the one before.
NOT_ERHUA = frozenset(
    "女儿 男儿 婴儿 幼儿 孤儿 少儿 胎儿 患儿 健儿 宠儿 孙儿 侄儿 妻儿 弃儿 育儿 乳儿 新生儿 混血儿 幸运儿".split()
)


class NothingToSay(ValueError):
    """The text has no character the voice can speak."""


@dataclass
class Phonemes:
    symbols: list[str]
    ids: list[int]
    chars: list[tuple[str, int, int]]  # each spoken character and its [start, end) in symbols


@dataclass
class _Syllable:
    char: str
    pinyin: str  # TONE3 with 5 for the neutral tone, e.g. "hao3", "de5"
    word: tuple[int, int]  # (clause, word): the jieba word it belongs to, for prosody breaks
    word_text: str
    last_in_word: bool

    @property
    def tone(self) -> str:
        return self.pinyin[-1]

    def retone(self, tone: str) -> None:
        self.pinyin = self.pinyin[:-1] + tone


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

    pinyin = Pinyin(Converter()).pinyin

    @lru_cache(maxsize=1 << 16)
    def read(word: str) -> tuple[str, ...]:
        # pypinyin reads a word missing from its phrase list char by char; its own segmenter
        # finds the phrases inside (中国人民银行 -> 银行 hang2). One placeholder per
        # unreadable character keeps the result aligned with the text. Cached because
        # pypinyin is the slow step and words repeat.
        units = [word] if len(word) == 1 or word in PHRASES_DICT else seg(word)
        readings = pinyin(units, style=Style.TONE3, errors=lambda chars: ["?"] * len(chars))
        return tuple(reading[0] for reading in readings)

    return read


def _syllables(clause: str, clause_no: int) -> list[_Syllable]:
    """Pinyin by word, so polyphones resolve in context and sandhi applies within words."""
    read = _pypinyin()
    return [
        _Syllable(char, reading, (clause_no, n), word, i == len(word) - 1)
        for n, word in enumerate(words(clause))
        for i, (char, reading) in enumerate(zip(word, read(word), strict=True))
    ]


def _sandhi(syllables: list[_Syllable]) -> None:
    """不, 一 and third-tone sandhi across the pieces pypinyin read one at a time."""
    # pypinyin's phrase list lacks most words (统一, 不去), so its own rules, which stop at the
    # edge of each piece, miss them. Right to left, so a syllable sees its neighbour's final tone.
    for i in reversed(range(len(syllables) - 1)):
        syl, nxt = syllables[i], syllables[i + 1]
        prev = syllables[i - 1] if i else None
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


class G2P:
    def __init__(self, symbol_to_id: dict[str, int], pinyin_dict: dict[str, list[str]]):
        self.symbol_to_id = symbol_to_id
        self.pinyin_dict = pinyin_dict

    def _phones(self, pinyin: str) -> list[str] | None:
        base, tone = pinyin[:-1], pinyin[-1]
        pair = self.pinyin_dict.get(ALIASES.get(base, base))
        if pair is None or not tone.isdigit():
            return None
        initial, final = pair
        return [initial, final + tone]

    def convert(self, text: str) -> Phonemes:
        """One segment to symbols: sil, initial + final per character with #0/#1/#3 breaks, sil, eos."""
        symbols, chars = ["sil"], []
        last_word, after_punctuation = None, False
        for clause_no, part in enumerate(PUNCTUATION.split(text)):
            if not part or PUNCTUATION.fullmatch(part):
                after_punctuation = after_punctuation or bool(chars)
                continue
            syllables = _syllables(part, clause_no)
            _sandhi(syllables)
            for syl in syllables:
                phones = self._phones(syl.pinyin)
                if phones is None:
                    logger.debug("no Baker symbols for %r (%s); skipped", syl.char, syl.pinyin)
                    continue
                erhua = (
                    syl.char == "儿"
                    and syl.last_in_word
                    and last_word == syl.word  # the syllable before it in the word was spoken
                    and syl.word_text not in NOT_ERHUA
                    and syl.word_text[-2:] not in NOT_ERHUA
                )
                if erhua:
                    # Baker labels erhua as the previous final plus a neutral er.
                    phones = ["er5"]
                elif chars:
                    symbols.append("#3" if after_punctuation else "#1" if syl.word != last_word else "#0")
                chars.append((syl.char, len(symbols), len(symbols) + len(phones)))
                symbols.extend(phones)
                last_word, after_punctuation = syl.word, False
        if not chars:
            raise NothingToSay("nothing to say")
        symbols += ["sil", "eos"]
        return Phonemes(symbols, [self.symbol_to_id[s] for s in symbols], chars)
