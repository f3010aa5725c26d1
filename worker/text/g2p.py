"""Grapheme-to-phoneme: one segment of normalised text to the Baker voice's symbols and ids."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

from shared.text import pinyin
from worker.engines.base import NothingToSay

logger = logging.getLogger(__name__)

# pypinyin spells some interjections with syllabic nasals the Baker set lacks.
ALIASES = {"n": "en", "m": "mu", "hm": "hen", "hng": "heng", "ê": "ei"}
# Words where 儿 means child and keeps its own syllable instead of rhotacising the one before.
NOT_ERHUA = frozenset(
    "女儿 男儿 婴儿 幼儿 孤儿 少儿 胎儿 患儿 健儿 宠儿 孙儿 侄儿 妻儿 弃儿 育儿 乳儿 新生儿 混血儿 幸运儿".split()
)


@dataclass
class Phonemes:
    symbols: list[str]
    ids: list[int]
    # Each spoken character, its [start, end) in symbols, and its index in the segment's text.
    chars: list[tuple[str, int, int, int]]


class G2P:
    def __init__(self, symbol_to_id: dict[str, int], pinyin_dict: dict[str, list[str]]):
        self.symbol_to_id = symbol_to_id
        self.pinyin_dict = pinyin_dict

    def _phones(self, reading: str) -> list[str] | None:
        base, tone = reading[:-1], reading[-1]
        pair = self.pinyin_dict.get(ALIASES.get(base, base))
        if pair is None or not tone.isdigit():
            return None
        initial, final = pair
        return [initial, final + tone]

    def convert(self, text: str, fixed: Sequence[str | None] | None = None) -> Phonemes:
        """One segment to symbols: sil, initial + final per character with #0/#1/#3 breaks, sil, eos.
        `fixed` holds readings (one per character of `text`, None where free) that a lexicon
        or SSML set."""
        symbols, chars = ["sil"], []
        last_word = None
        for syl in pinyin.read(text, fixed):
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
                # A new clause means punctuation came between: the longest break.
                after_punctuation = last_word is not None and syl.word[0] != last_word[0]
                symbols.append("#3" if after_punctuation else "#1" if syl.word != last_word else "#0")
            chars.append((syl.char, len(symbols), len(symbols) + len(phones), syl.index))
            symbols.extend(phones)
            last_word = syl.word
        if not chars:
            raise NothingToSay("nothing to say")
        symbols += ["sil", "eos"]
        return Phonemes(symbols, [self.symbol_to_id[s] for s in symbols], chars)
