"""Polyphones read by the words around them, where pypinyin's word list cannot tell: 还 as a verb
(还书, 按时还), 调 when a level is turned (调小), 为 as "is" (尾号为), 数 counting (数一数),
surnames before a title (曾先生, 单女士, 解经理).

Each rule is a regular expression over one clause of normalised text that matches at the
character it reads. A lexicon's or SSML's reading still wins (the caller skips fixed syllables).
"""
from __future__ import annotations

import re
from functools import cache

# Words that follow a surname: a title, a kinship or polite form of address.
TITLES = ("先生|女士|小姐|老师|医生|大夫|护士|经理|总监|总|主任|主管|教授|博士|同学|师傅|阿姨|叔叔|"
          "律师|警官|院长|局长|科长|部长|处长|校长|老板|太太|夫人|工")
# Surnames whose reading differs from the character's everyday one.
SURNAMES = {"曾": "zeng1", "单": "shan4", "解": "xie4", "仇": "qiu2", "区": "ou1", "朴": "piao2",
            "查": "zha1", "盖": "ge3", "尉": "yu4", "缪": "miao4", "翟": "zhai2", "覃": "qin2", "华": "hua4",
            "任": "ren2", "纪": "ji3", "乐": "yue4"}
NUMERALS = "零一二三四五六七八九十两百千"
# What follows 为 when it means "for" (wei4): the one it is done for. Otherwise, inside a clause,
# 为 is "is, as" (wei2): 尾号为八八六六, 时间为每天, 调整为上午十点.
FOR_WHOM = ("您|你|我|他|她|它|咱|大家|各位|自己|人民|国家|社会|客户|顾客|用户|患者|病人|乘客|旅客|"
            "孩子|群众|市民|业主|此|何|什么|了|谁|每位|广大")

# Where a rule may read its character: anywhere, only where the segmenter left the character a
# word of its own (因为's 为 is wei4, a lone 为 in 尾号为 is not), or where a word starts (订单经理's
# 单 ends a word and is no surname).
ANYWHERE, ALONE, WORD_START = "anywhere", "alone", "word start"

# (reading, pattern, where): the pattern matches at the one character it reads.
RULES: tuple[tuple[str, str, str], ...] = (
    # 还 is a verb (huan2) before what is given back or to whom, and at a clause's end: the adverb
    # 还 (hai2) always has something after it.
    ("huan2", r"还(?=[给书钱款贷债账]|清(?!楚|晰)|完(?!成|全|善|整|美)|[你我他她]们?(?:$|[钱书一两个的]))", ANYWHERE),
    ("huan2", r"还$", ANYWHERE),
    ("huan2", r"(?<=[按准及如到][时期])还(?![没不是有在要能会可])", ANYWHERE),
    # 调 is tiao2 when something is set to a level: 调小, 调低, 调到二十六度, 调成静音.
    ("tiao2", rf"调(?=[小低高大亮暗快慢好成至]|一下|到[{NUMERALS}])", ANYWHERE),
    # 为 inside a clause, before anything but the one something is for.
    ("wei2", rf"(?<=[\u4e00-\u9fff])为(?!{FOR_WHOM})", ALONE),
    ("wei2", r"为(?=人(?!民))", ANYWHERE),
    # 数 counting things (a verb, shu3): 数一数, 数了数, 数钱, 数不清.
    ("shu3", r"数(?=[一了]数|钱|不清|得清|一下)", ANYWHERE),
    ("shu3", r"(?<=数[一了])数", ANYWHERE),
    # 量 measuring (liang2): 量一下, 量体温.
    ("liang2", r"量(?=一下|体温|血压|身高|体重|尺寸)", ANYWHERE),
    # Surnames before a title, or after 姓.
    *((reading, rf"{char}(?={TITLES})", WORD_START) for char, reading in SURNAMES.items()),
    *((reading, rf"(?<=姓){char}", ANYWHERE) for char, reading in SURNAMES.items()),
)


@cache
def _compiled() -> tuple[tuple[str, re.Pattern, str], ...]:
    return tuple((reading, re.compile(pattern), where) for reading, pattern, where in RULES)


# A clause without any of these characters skips every rule: one set test per character.
RULED = frozenset("还调为数量" + "".join(SURNAMES))


def readings(clause: str, words: list[str]) -> dict[int, str]:
    """{index in clause: reading} for the polyphones of `clause` that a rule reads; `words` are the
    segmenter's words of the clause, in order."""
    if RULED.isdisjoint(clause):
        return {}
    starts, alone, at = set(), set(), 0
    for word in words:
        starts.add(at)
        if len(word) == 1:
            alone.add(at)
        at += len(word)
    found: dict[int, str] = {}
    for reading, pattern, where in _compiled():
        for m in pattern.finditer(clause):
            i = m.start()
            if (where == ALONE and i not in alone) or (where == WORD_START and i not in starts):
                continue
            found.setdefault(i, reading)
    return found
