"""Polyphones read by the words around them, where pypinyin's word list cannot tell: 还 as a verb
(还书, 按时还), 调 when a level is turned (调小), 为 as "is" (尾号为), 数 counting (数一数),
surnames before a title (曾先生, 单女士, 解经理), 长 "long" (很长), 得 "must" (你得去) and after a
verb (跑得快), 地 after an adverb (慢慢地), and more; voxq/bench/polyphones.txt measures them.

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
    # 还了 is a debt paid (早就还了, 还了一半), but for 还了得, 还了解, 还了不起 (hai2).
    ("huan2", r"还(?=了(?![得解不]))", ANYWHERE),
    ("huan2", r"(?<=[按准及如到][时期])还(?![没不是有在要能会可])", ANYWHERE),
    # 调 is tiao2 when something is set to a level: 调小, 调低, 调到二十六度, 调成静音.
    ("tiao2", rf"调(?=[小低高大亮暗快慢好成至]|一下|到[{NUMERALS}])", ANYWHERE),
    # 为 inside a clause, before anything but the one something is for.
    ("wei2", rf"(?<=[\u4e00-\u9fff])为(?!{FOR_WHOM})", ALONE),
    ("wei2", r"为(?=人(?!民))", ANYWHERE),
    ("wei2", r"(?<=[评选])为", ANYWHERE),
    # 数 counting things (a verb, shu3): 数一数, 数了数, 数钱, 数不清.
    ("shu3", r"数(?=[一了]数|钱|不清|得清|一下)", ANYWHERE),
    ("shu3", r"(?<=数[一了])数", ANYWHERE),
    # 数 "to rank as" (shu3) before who ranks first: 全公司数他最好, 数你第一.
    ("shu3", r"数(?=[你我他她它]最|[你我他她它]第一)", ANYWHERE),
    # 量 measuring (liang2): 量一下, 量体温.
    ("liang2", r"量(?=一下|一量|体温|血压|身高|体重|尺寸)", ANYWHERE),
    ("liang2", r"(?<=量一)量", ANYWHERE),
    # 长 as "long" (chang2) after a degree adverb: 很长, 太长了, 这么长; not 长得, 长大.
    ("chang2", r"(?:(?<=[很太最挺更真较])|(?<=这么|那么|多么))长(?![大得出成高满胖个])", ANYWHERE),
    # 行 counting lines of text (hang2): 一行字, 排成两行.
    ("hang2", rf"(?<=[{NUMERALS}几])行(?=字|诗|代码|$)", ANYWHERE),
    ("hang2", rf"(?<=第[{NUMERALS}])行", ANYWHERE),
    # 这一行 is a line or a trade (hang2); not 这一行为, 这一行动, 这一行人 (xing2).
    ("hang2", r"(?<=[这那哪]一)行(?![为动驶进李程人])", ANYWHERE),
    # 得 as "must" (dei3) between a person and what they must do: 你得去, 我们得走了.
    ("dei3", r"(?<=[你我他她们咱])得(?=去|走|跟|赶|马上|先|好好|再|快|早|自己|多[休吃喝穿注练]|([\u4e00-\u9fff])\1)",
     ANYWHERE),  # …or before a doubled verb: 我得问问, 你得想想
    # 得 linking a verb to how it went (de5): 跑得很快, 考得不错; not 获得, 取得 (de2).
    ("de5", r"(?<![获取赢博求所难使心习应])得(?=很|太|真|非常|挺|特别|十分|那么|这么|更|越|有点|不错)",
     ANYWHERE),
    # 地 after an adverb-forming word (de5): 慢慢地走, 认真地填写; not 地方, 地上.
    ("de5", r"(?<=慢慢|好好|静静|悄悄|轻轻|默默|紧紧|渐渐|狠狠|深深|早早|偷偷|牢牢|稳稳|细细|仔细|认真|高兴|"
            r"努力|尽力|积极|热情|耐心|大声|小声|不断|逐渐|主动|亲切|安静|开心|愉快|激动|用力|匆匆|清楚|明显|"
            r"顺利|彻底|坚决|及时|准确|详细|飞快|缓缓|默然|轻声|低声|尽快|反复|一一)地", ANYWHERE),
    # 着 "asleep, reached" (zhao2) in 睡不着, 找不着.
    ("zhao2", r"(?<=[睡找够摸猜见用犯][不得])着", ANYWHERE),
    # 重 "again" (chong2) before an action done over: 重试, 重启, 重置.
    ("chong2", r"重(?=试|启|置|播|填|装|来|输|发|选)", WORD_START),
    # 中 "to hit, win" (zhong4) before a prize: 中了一等奖; not 其中奖金 (zhong1).
    ("zhong4", r"(?<![其之家空心手途当集])中(?=了?(?:[一二三特头]等)?奖)", ANYWHERE),
    # 背 carrying on the back (bei1): 背起, 背着书包.
    ("bei1", r"背(?=起|着(?:书包|包|孩子|行李|背包|老人|篓))", ANYWHERE),
    # 转 going round (zhuan4): 转了一圈, 转来转去.
    ("zhuan4", r"转(?=了?[好一几两三半]*圈|来转去)", ANYWHERE),
    ("zhuan4", r"(?<=转来)转", ANYWHERE),
    # 种 "to plant, inoculate" (zhong4): 接种疫苗.
    ("zhong4", r"(?<=接)种(?![类子族群])", ANYWHERE),
    ("zhong4", r"(?<![这那哪每各某一两几多此品物人兵工剧语变别])种(?=了?(?:很多|一些|许多|不少)?(?:花|树|菜|草|瓜|豆|水稻|小麦|庄稼))",
     ANYWHERE),
    # 结 bearing fruit (jie1): 树上结了很多苹果.
    ("jie1", r"(?<=树上|枝上|藤上)结", ANYWHERE),
    # 教 teaching someone (jiao1): 他教我画画, 在中学教英语; not 请教, 宗教.
    ("jiao1", r"(?<![请领指求讨赐说管调宗礼传家任助执文天主佛道回督])教(?=[我你他她]|了|过|英语|数学|语文|孩子|大家)",
     ANYWHERE),
    # 干 "dry" (gan1) after a way of drying: 晒干, 吹干, 擦干.
    ("gan1", r"(?<=[晒吹擦烘晾烤])干", ANYWHERE),
    # 只 counting animals and things (zhi1) after a numeral: 两只手; not 只是, 只有.
    ("zhi1", rf"(?<=[{NUMERALS}几每])只(?![是有要能好会想需得不在])", ANYWHERE),
    # 尽 "to exhaust, do all one can" (jin4): 尽力, 尽了最大的努力; not 尽快, 尽量 (jin3).
    ("jin4", r"尽(?=了|力|心|全力|职|责)", ANYWHERE),
    # 担 counting loads (dan4): 一担水; not 一担心.
    ("dan4", rf"(?<=[{NUMERALS}])担(?![心任忧保当负])", ANYWHERE),
    # 假 as leave (jia4) counted in days or weeks: 请三天假.
    ("jia4", r"(?<=[天周])假", ANYWHERE),
    # 冲 "towards" (chong4) before whom: 冲着我喊.
    ("chong4", r"冲(?=着[我你他她它大人])", ANYWHERE),
    # 冲 "blunt, strong" (chong4) after a degree adverb: 说话很冲; not 很冲动.
    ("chong4", r"(?<=[很太真挺])冲(?![动突刺击浪洗破锋])", ANYWHERE),
    # 盛 filling a bowl (cheng2): 盛一碗饭, 盛汤.
    ("cheng2", r"盛(?=一?[碗碟盘勺]|饭|汤)", ANYWHERE),
    # Surnames before a title, or after 姓.
    *((reading, rf"{char}(?={TITLES})", WORD_START) for char, reading in SURNAMES.items()),
    *((reading, rf"(?<=姓){char}", ANYWHERE) for char, reading in SURNAMES.items()),
)


def _target(pattern: str) -> str:
    """The character a rule reads: the first one after the lookbehinds its pattern starts with."""
    at = 0
    while pattern.startswith(("(?<", "(?:(?<"), at):
        depth = 0
        for at in range(at, len(pattern)):
            if pattern[at] == "\\":
                continue
            if pattern[at] == "(" and pattern[at - 1:at] != "\\":
                depth += 1
            elif pattern[at] == ")" and pattern[at - 1:at] != "\\":
                depth -= 1
                if depth == 0:
                    break
        at += 1
    return pattern[at]


@cache
def _compiled() -> tuple[tuple[str, re.Pattern, str, str], ...]:
    return tuple((reading, re.compile(pattern), where, _target(pattern)) for reading, pattern, where in RULES)


# A clause without any of these characters skips every rule: one set test per character. Each rule is
# tried only on a clause with its own character, so that rules for other characters cost nothing.
RULED = frozenset(_target(pattern) for _, pattern, _ in RULES)


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
    for reading, pattern, where, char in _compiled():
        if char not in clause:
            continue
        for m in pattern.finditer(clause):
            i = m.start()
            if (where == ALONE and i not in alone) or (where == WORD_START and i not in starts):
                continue
            found.setdefault(i, reading)
    return found
