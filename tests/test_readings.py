"""Readings a Chinese listener expects where the dictionary alone misleads: polyphones as verbs and
names, versions, Roman numerals, addresses and product names; lexicons and SSML still win."""
from __future__ import annotations

import pytest

from shared.text import frontend, pinyin
from shared.text.lexicon import Lexicon, content_hash, parse
from shared.text.normalizer import normalize


def readings(text: str, **plan_options) -> list[tuple[str, str]]:
    """Each planned character and its pinyin, in order."""
    preview = frontend.preview(frontend.plan(text, **plan_options))
    return [(c["char"], c["pinyin"]) for segment in preview["segments"] for c in segment["chars"]]


def reading_of(text: str, char: str, nth: int = 0, **plan_options) -> str:
    found = [py for c, py in readings(text, **plan_options) if c == char]
    return found[nth]


@pytest.mark.parametrize(("text", "char", "nth", "expected"), [
    # 还: a verb (given back) is huan2, the adverb (still) hai2.
    ("请按时还书。", "还", 0, "huan2"),
    ("借了别人的钱，一定要按时还。", "还", 0, "huan2"),
    ("这本书我明天还你。", "还", 0, "huan2"),
    ("请把图书还给图书馆。", "还", 0, "huan2"),
    ("贷款到期还本付息。", "还", 0, "huan2"),
    ("您还需要其他帮助吗？", "还", 0, "hai2"),
    ("我还没吃饭。", "还", 0, "hai2"),
    ("他还完成了作业。", "还", 0, "hai2"),
    ("还是这样吧。", "还", 0, "hai2"),
    # 调: turning a level up or down is tiao2; an inquiry or a transfer diao4.
    ("请把音量调小一点。", "调", 0, "tiao2"),
    ("把温度调低两度。", "调", 0, "tiao2"),
    ("空调可以调到26度。", "调", 1, "tiao2"),
    ("我们展开调查。", "调", 0, "diao4"),
    ("他被调到北京工作。", "调", 0, "diao4"),
    # 为: "as, is" wei2; "for" wei4.
    ("他为人正直。", "为", 0, "wei2"),
    ("您的尾号为8866。", "为", 0, "wei2"),
    ("开放时间为每天八点。", "为", 0, "wei2"),
    ("我们会尽快为您处理。", "为", 0, "wei4"),
    ("为人民服务。", "为", 0, "wei4"),
    ("因为下雨，活动取消。", "为", 0, "wei4"),
    ("为了您的安全，请系好安全带。", "为", 0, "wei4"),
    # 数: counting (a verb) shu3; a number shu4.
    ("请您数一数。", "数", 0, "shu3"),
    ("请您数一数。", "数", 1, "shu3"),
    ("他数了数钱。", "数", 0, "shu3"),
    ("这个数字不对。", "数", 0, "shu4"),
    # Surnames before a title or after 姓; the same characters elsewhere keep their reading.
    ("曾先生，您好。", "曾", 0, "zeng1"),
    ("请曾女士到前台。", "曾", 0, "zeng1"),
    ("我曾经来过。", "曾", 0, "ceng2"),
    ("单女士，您的包裹到了。", "单", 0, "shan4"),
    ("我姓单。", "单", 0, "shan4"),
    ("订单经理会联系您。", "单", 0, "dan1"),
    ("解经理下午开会。", "解", 0, "xie4"),
    ("这个问题怎么解决？", "解", 0, "jie3"),
    # Clinic words: a doctor, measuring, fastening.
    ("请张大夫到三号诊室。", "大", 0, "dai4"),
    ("请先量一下体温。", "量", 0, "liang2"),
    ("请系好安全带。", "系", 0, "ji4"),
    ("您的年假还剩五天。", "假", 0, "jia4"),
    ("您拨打的电话暂时无法接通。", "的", 0, "de5"),
])
def test_polyphones_read_in_context(text, char, nth, expected):
    assert reading_of(text, char, nth) == expected


def test_a_lexicon_still_wins_over_the_context_rules():
    content = '{"entries": [{"grapheme": "还书", "phoneme": "hai2 shu1"}]}'
    lexicon = Lexicon.from_entries("fix", parse(content, 10), content_hash(content))
    assert reading_of("请按时还书。", "还", lexicons=[lexicon]) == "hai2"


def test_ssml_phoneme_still_wins_over_the_context_rules():
    ssml = ('<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis" xml:lang="zh-CN">'
            '<phoneme alphabet="py" ph="ceng2">曾</phoneme>先生</speak>')
    assert reading_of(ssml, "曾", ssml=True) == "ceng2"


def test_a_text_without_ruled_characters_reads_as_before():
    # The rules touch nothing else: the plain dictionary-and-sandhi reading of a neutral sentence.
    assert [py for _, py in readings("你好，我们明天见。")] == ["ni2", "hao3", "wo3", "men5", "ming2", "tian1", "jian4"]


@pytest.mark.parametrize(("raw", "expected"), [
    # A version's v is 版本, said once: not again right after the word 版本.
    ("版本v2.0", "版本二点零"),
    ("版本号：v3.2.1", "版本号：三点二点一"),
    ("当前版本为V1.5", "当前版本为一点五"),
    ("请升级到v2.0.1", "请升级到版本二点零点一"),
    ("升级到v3", "升级到版本三"),
    # Roman numerals are numbers: Unicode's always, Latin capitals before a stage or grade word.
    ("Ⅲ期临床试验", "三期临床试验"),
    ("第Ⅱ章", "第二章"),
    ("Ⅻ月", "十二月"),
    ("肝癌IV期", "肝癌四期"),
    ("II型糖尿病", "二型糖尿病"),
    ("III级", "三级"),
    # Addresses: www as 三W, dots 点, @ 艾特, known words as words, the rest spelled.
    ("www.baidu.com", "三达布留点百度点康姆"),
    ("访问example.com了解", "访问伊艾克斯诶艾姆披艾勒伊点康姆了解"),
    ("官网voxq.cn", "官网维欧艾克斯扣点西恩"),
    ("请发邮件到help@qq.com", "请发邮件到艾尺伊艾勒披艾特扣扣点康姆"),
    # Product words said as words, not letters.
    ("iPhone 15 Pro", "爱疯十五普罗"),
    ("Mate 60 Pro Max", "艾姆诶提伊六十普罗麦克斯"),
    ("iPad mini", "爱派迷你"),
    # Short codes after their word are digits; a plain amount stays an amount.
    ("尾号为8866的账户", "尾号为八八六六的账户"),
    ("取件码是5271", "取件码是五二七幺"),
    ("起码10000元", "起码一万元"),
    ("每次2片", "每次两片"),
])
def test_normalizer_categories(raw, expected):
    assert normalize(raw) == expected


def test_an_address_does_not_break_the_sentence():
    # A bare domain's dot is 点, not a full stop that would cut the sentence in two.
    assert "。" not in normalize("请访问voxq.cn了解更多")


def test_rules_cost_nothing_on_text_without_their_characters():
    from shared.text import polyphones

    assert polyphones.readings("我们今天去公园", ["我们", "今天", "去", "公园"]) == {}
    assert pinyin.read("我们")[0].pinyin == "wo3"
