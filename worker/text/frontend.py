"""The text front end in one call: normalise, split into segments, convert each to phonemes."""
from __future__ import annotations

import logging

from worker.text.g2p import G2P, NothingToSay, Phonemes
from worker.text.normalizer import normalize
from worker.text.segmenter import Segment, split_segments

logger = logging.getLogger(__name__)


class Frontend:
    def __init__(
        self, symbol_to_id: dict[str, int], pinyin_dict: dict[str, list[str]], max_segment_chars: int = 60
    ):
        self.g2p = G2P(symbol_to_id, pinyin_dict)
        self.max_segment_chars = max_segment_chars

    def prepare(self, text: str) -> list[tuple[Segment, Phonemes]]:
        """Raw text to (segment, phonemes) pairs; ValueError("nothing to say") when none is speakable."""
        prepared = []
        for segment in split_segments(normalize(text), self.max_segment_chars):
            try:
                prepared.append((segment, self.g2p.convert(segment.text)))
            except NothingToSay:
                logger.debug("segment %r has nothing to say; skipped", segment.text)
        if not prepared:
            raise NothingToSay("nothing to say")
        return prepared
