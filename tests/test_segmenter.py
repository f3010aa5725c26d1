"""Segmentation of normalised text: sentences, clause packing, hard splits and their pauses."""
import pytest

from shared.text.segmenter import Segment, split_segments, words


def spoken(text: str) -> int:
    return sum(c not in "，。！？；：、" for c in text)


def test_each_sentence_is_a_segment_with_its_punctuation():
    assert split_segments("你好。今天天气不错！你呢？") == [
        Segment("你好。", "sentence"),
        Segment("今天天气不错！", "sentence"),
        Segment("你呢？", "sentence"),
    ]


def test_short_sentence_keeps_its_clauses_together():
    assert split_segments("你好，世界。") == [Segment("你好，世界。", "sentence")]


def test_newline_is_a_sentence_break_and_not_text():
    assert split_segments("第一句\n第二句，还有。") == [
        Segment("第一句", "sentence"),
        Segment("第二句，还有。", "sentence"),
    ]


def test_text_without_final_punctuation_ends_with_no_pause():
    assert split_segments("没有标点的结尾") == [Segment("没有标点的结尾", "none")]


def test_long_sentence_is_packed_clause_by_clause():
    text = "我们今天去公园玩，然后去吃饭，再去看电影；最后回家睡觉。"
    assert split_segments(text, max_chars=10) == [
        Segment("我们今天去公园玩，", "clause"),
        Segment("然后去吃饭，再去看电影；", "clause"),
        Segment("最后回家睡觉。", "sentence"),
    ]


def test_run_on_text_is_cut_between_words():
    text = "中华人民共和国成立于一九四九年我们都很高兴因为今天天气很好。"
    segments = split_segments(text, max_chars=8)
    assert "".join(s.text for s in segments) == text
    assert [s.pause for s in segments] == ["none"] * (len(segments) - 1) + ["sentence"]
    assert all(spoken(s.text) <= 8 for s in segments)
    cuts = {sum(len(s.text) for s in segments[: i + 1]) for i in range(len(segments) - 1)}
    boundaries = {sum(len(w) for w in words(text)[: i + 1]) for i in range(len(words(text)))}
    assert cuts <= boundaries


def test_a_word_longer_than_a_segment_is_cut_anyway():
    segments = split_segments("中华人民共和国", max_chars=3)
    assert [s.text for s in segments] == ["中华人", "民共和", "国"]


@pytest.mark.parametrize("text", ["", "，。", "！！？", "\n\n", "你好，，。\n。"])
def test_segments_with_nothing_to_say_are_dropped(text):
    assert all(spoken(s.text) for s in split_segments(text))


def test_punctuation_only_sentences_are_dropped():
    assert split_segments("你好。！。好") == [Segment("你好。！。", "sentence"), Segment("好", "none")]


@pytest.mark.parametrize("max_chars", [1, 5, 17, 60])
def test_no_segment_exceeds_max_chars_and_nothing_is_lost(max_chars):
    text = "今天是个好日子，我们一起去公园散步吧。天气预报说明天会下雨，记得带伞！" * 5 + "一口气说完不带停顿的长句子" * 10
    segments = split_segments(text, max_chars)
    assert all(0 < spoken(s.text) <= max_chars for s in segments)
    assert "".join(s.text for s in segments) == text
    assert all(s.pause in {"sentence", "clause", "none"} for s in segments)
