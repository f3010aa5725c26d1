"""Text normalisation: raw user text to Chinese characters and ，。！？；：、, numbers and symbols
read out, each output character knowing which characters of the input it came from."""
from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Callable

logger = logging.getLogger(__name__)

# Reading rules, applied in this order to the NFKC-folded text (documented here because
# callers depend on them; tests/test_normalizer.py has a table per rule):
#  * abbreviations with a period: No.1 -> 第一, e.g. -> 例如, i.e. -> 即, etc. -> 等等, vs. -> 对,
#    Dr. Smith -> Smith博士 (Mr./Mrs./Ms./Prof. alike), Inc./Co./Ltd. -> 公司/有限公司;
#  * URLs and e-mail addresses, with a scheme, www. or a known top-level domain (example.com):
#    the scheme is not read; . 点, / 斜杠, : 冒号, - 杠, _ 下划线, @ 艾特, digits one by one;
#    www 三达布留 ("三W"); the words are read as English words (below);
#  * version numbers v2.0.1 -> 版本二点零点一, v3 -> 版本三, but after the word 版本 (版本号) the v
#    is not read again (版本v2.0 -> 版本二点零); IPv4 addresses 192.168.1.1 -> 幺九二点幺六八点幺点幺;
#  * Roman numerals: Ⅲ期 -> 三期 (every Unicode Roman numeral), and capital Latin ones before a
#    stage or grade word (IV期, II型, III级 -> 四期, 二型, 三级);
#  * dates 2024-03-15, 2024/3/15, 2024.3.15 -> 二零二四年三月十五日; a 4-digit number before 年 is
#    a year, read digit by digit; shorter ones are amounts (10年 -> 十年); 3月15号 -> 三月十五号;
#  * times 10:30 -> 十点三十分, 10:30:15 -> 十点三十分十五秒, 10:00 -> 十点; ranges of times
#    9:00-17:30 -> 九点到十七点三十分; other a:b -> a比b; a dash between a date or time word and a
#    number is a range (1日-5日 -> 一日到五日, 9点-11点 -> 九点到十一点);
#  * phone numbers and codes are read digit by digit with 1 as 幺 (as Chinese speakers say
#    numbers to be written down): an 11-digit mobile number 1[3-9]xxxxxxxxx, international
#    numbers written with + and spaces or dashes (+1 415 555 2671 -> 加幺四幺五...), dashed numbers
#    0xx(x)-xxxxxxx(x) and xxx(x)-xxx(x)-xxxx, a run of 3+ digits that starts with 0 (007),
#    a run of 5+ digits right after a word that names a code (号码, 编号, 单号, 账号, 卡号,
#    验证码, 邮编, 电话, QQ, ID ..., optionally followed by 是/为/:), e.g. 订单号123456, a run of
#    4+ after a word for a short code (尾号, 取件码, 密码 ...: 尾号为8866), and
#    any run over 16 digits (longer than cn2an reads as an amount);
#  * model numbers: 3+ digits right after letters are read digit by digit (RTX4090 -> ...四零九零);
#  * money ¥12.5 -> 十二点五元, $5 -> 五美元 (also € 欧元, £ 英镑, US$, HK$, and ISO codes
#    USD/CNY/RMB/EUR/GBP/JPY/HKD before or after the amount); a currency word right after the
#    amount is read once ($100美元 -> 一百美元); 50% -> 百分之五十, 3-5% -> 百分之三到五;
#  * temperatures below zero: -5°C -> 零下五摄氏度, -3度 -> 零下三度;
#  * ranges 3-5 / 3~5 -> 三到五; units after a number (5km -> 五公里); rates with a slash
#    (3000元/月 -> 三千元每月, 120次/分 -> 一百二十次每分, 5元/kg -> 五元每千克);
#  * ordinals 1st/2nd/3rd/4th -> 第一/第二/第三/第四; 第2 -> 第二;
#  * -5 -> 负五 (a minus not after a digit or letter), 3.14 -> 三点一四, 1/2 -> 二分之一,
#    1,234 -> 一千二百三十四, 2 before a measure word -> 两 (2个 -> 两个), every other digit
#    run -> an integer (cn2an);
#  * English words (the Baker voice has no English phones): a word a lexicon names was replaced
#    before this runs; a common word with an established Chinese name is read by it (WORDS:
#    Google -> 谷歌, email -> 电子邮件); any other word, abbreviations (CPU) included, is spelled
#    letter by letter, case-insensitively, with Chinese approximations (A 诶, B 比, C 西 ...:
#    LETTERS below);
#  * a newline is a sentence break 。; Western , . ! ? ; : become ，。！？；：; runs of
#    punctuation collapse to one mark; everything else (emoji, symbols, controls) is dropped.

DIGITS = str.maketrans("0123456789", "零一二三四五六七八九")
CODE_DIGITS = str.maketrans("0123456789", "零幺二三四五六七八九")

LETTERS = {
    "a": "诶", "b": "比", "c": "西", "d": "迪", "e": "伊", "f": "艾弗", "g": "吉",
    "h": "艾尺", "i": "艾", "j": "杰", "k": "开", "l": "艾勒", "m": "艾姆", "n": "恩",
    "o": "欧", "p": "披", "q": "扣", "r": "阿尔", "s": "艾丝", "t": "提", "u": "优",
    "v": "维", "w": "达布留", "x": "艾克斯", "y": "外", "z": "贼",
}

# Words with an established Chinese name, read by it rather than spelled. Only words whose
# Chinese name is what a Mandarin speaker says; a tenant's lexicon adds or overrides any.
WORDS = {
    "google": "谷歌", "microsoft": "微软", "apple": "苹果", "amazon": "亚马逊", "facebook": "脸书",
    "twitter": "推特", "tesla": "特斯拉", "huawei": "华为", "xiaomi": "小米", "tencent": "腾讯",
    "alibaba": "阿里巴巴", "baidu": "百度", "wechat": "微信", "weibo": "微博", "taobao": "淘宝",
    "youtube": "油管", "netflix": "网飞", "nvidia": "英伟达", "intel": "英特尔", "samsung": "三星",
    "sony": "索尼", "disney": "迪士尼", "starbucks": "星巴克", "mcdonald's": "麦当劳",
    "email": "电子邮件", "e-mail": "电子邮件", "wifi": "无线网", "wi-fi": "无线网",
    "ok": "欧克", "hello": "哈喽", "hi": "嗨", "bye": "拜拜", "iphone": "爱疯", "ipad": "爱派",
    "android": "安卓", "windows": "视窗", "linux": "林纳斯", "python": "派森", "java": "加瓦",
    "app": "应用", "blog": "博客", "online": "在线", "offline": "离线", "download": "下载",
    "internet": "互联网", "web": "网页", "cool": "酷", "party": "派对", "taxi": "的士",
    "www": "三达布留", "com": "康姆", "net": "耐特",
    # Product-name words a Chinese speaker says as words, not letters (iPhone 15 Pro, Mate 60 Pro+).
    "pro": "普罗", "max": "麦克斯", "plus": "普拉斯", "mini": "迷你", "ultra": "奥特拉", "lite": "莱特",
    "air": "艾尔", "pad": "派德", "book": "布克", "watch": "沃奇", "coffee": "咖啡", "pizza": "披萨", "chocolate": "巧克力", "bus": "巴士", "vip": "贵宾",
}
ABBREVIATIONS = {
    "no.": "第", "e.g.": "例如", "i.e.": "即", "etc.": "等等", "vs.": "对", "approx.": "约",
    "inc.": "公司", "co.": "公司", "ltd.": "有限公司", "dept.": "部门", "fig.": "图", "tel.": "电话",
    "ext.": "转",
}
TITLES = {"mr.": "先生", "mrs.": "太太", "ms.": "女士", "dr.": "博士", "prof.": "教授"}
ISO_CURRENCIES = {"USD": "美元", "CNY": "元", "RMB": "元", "EUR": "欧元", "GBP": "英镑", "JPY": "日元",
                  "HKD": "港元"}
CURRENCY_WORDS = ("元", "块", "美元", "欧元", "英镑", "日元", "港元", "港币", "人民币")
URL_SYMBOLS = {".": "点", "/": "斜杠", ":": "冒号", "-": "杠", "_": "下划线", "@": "艾特", "?": "问号",
               "=": "等于", "&": "和", "#": "井号", "%": "百分号", "~": "波浪号", "+": "加"}

# Case matters: m is metres, M is a letter; longer spellings first so km wins over m.
UNITS = {
    "km/h": "公里每小时", "m/s": "米每秒", "km^2": "平方公里", "cm^2": "平方厘米",
    "m^2": "平方米", "m^3": "立方米", "cm^3": "立方厘米", "°C": "摄氏度", "°F": "华氏度",
    "kWh": "千瓦时", "kHz": "千赫兹", "MHz": "兆赫兹", "GHz": "吉赫兹", "kW": "千瓦",
    "km": "公里", "cm": "厘米", "mm": "毫米", "nm": "纳米", "kg": "千克", "mg": "毫克",
    "ml": "毫升", "mL": "毫升", "min": "分钟", "ms": "毫秒", "Hz": "赫兹", "°": "度",
    "m": "米", "g": "克", "t": "吨", "L": "升", "l": "升", "h": "小时", "s": "秒", "W": "瓦",
}
CURRENCIES = {"¥": "元", "$": "美元", "€": "欧元", "£": "英镑", "US$": "美元", "HK$": "港元"}
SYMBOLS = {"&": "和", "+": "加", "=": "等于", "×": "乘", "÷": "除以", "〇": "零"}
PUNCTUATION = str.maketrans(",.!?;:", "，。！？；：")
SENTENCE_END = "。！？"
KEEP = "，。！？；：、"

ROMAN_CHARS = "ⅠⅡⅢⅣⅤⅥⅦⅧⅨⅩⅪⅫⅰⅱⅲⅳⅴⅵⅶⅷⅸⅹⅺⅻ"
# NFKC would turn m² into m2 and ㎡ into m2, which then reads as "m two".
PRE_FOLD = str.maketrans({"²": "^2", "³": "^3", "㎡": "m^2", "㎥": "m^3", "㎠": "cm^2", "…": "。",
                          **{c: str(int(unicodedata.numeric(c))) for c in ROMAN_CHARS}})
# The Latin spelling of each Roman numeral, from Unicode's own folding (Ⅳ -> IV), and its value.
LATIN_ROMAN = {unicodedata.normalize("NFKC", c): int(unicodedata.numeric(c)) for c in ROMAN_CHARS[:12]}

# re.ASCII wherever digits are matched: \d must not match other scripts' digits, which cn2an cannot read.
NUM = r"\d+(?:\.\d+)?"
# A number starts where a run of digits starts. Without this, each pattern below that begins with
# a number is tried from every digit of a long run, each try scanning to the run's end: quadratic
# (20,000 digits took a minute). A match can never start mid-run when none starts at the run's
# start (the rest of the pattern sees the same text), so this changes no reading.
AT_NUM = r"(?<!\d)"
CODE_CONTEXT = re.compile(
    r"(?:号码|编号|单号|账号|帐号|卡号|学号|工号|尾号|证号|代码|密码|验证码|邮编|电话|手机|QQ|ID)(?:是|为|:|\s)*$",
    re.IGNORECASE | re.ASCII,
)
# Codes that are often only 4 digits long: 尾号8866 is no amount.
SHORT_CODE_CONTEXT = re.compile(
    r"(?:尾号|取件码|取货码|提货码|兑换码|邀请码|验证码|密码|房间号|工号)(?:是|为|:|\s)*$", re.ASCII)
UNIT_RE = "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))

DATE = re.compile(r"(?<!\d)(\d{4})([-/.])(\d{1,2})\2(\d{1,2})(?!\d)", re.ASCII)
YEAR = re.compile(r"(?<!\d)(\d{4})(?:\s*[-~到至]\s*(\d{4}))?(?=年)", re.ASCII)
TIME = re.compile(r"(?<!\d)(\d{1,2}):(\d{2})(?::(\d{2}))?(?!\d)", re.ASCII)
RATIO = re.compile(r"(?<=\d):(?=\d)", re.ASCII)
PHONE = re.compile(
    r"(?<!\d)(?:(?:\+86[- ]?)?1[3-9]\d{9}|0\d{2,3}-\d{7,8}|\d{3,4}-\d{3,4}-\d{4})(?![\d-])", re.ASCII
)
THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))", re.ASCII)
PERCENT_RANGE = re.compile(rf"{AT_NUM}({NUM})\s*%?\s*[-~～]\s*({NUM})\s*%", re.ASCII)
PERCENT = re.compile(rf"(-?{AT_NUM}{NUM})\s*%", re.ASCII)
PERMILLE = re.compile(rf"(-?{AT_NUM}{NUM})\s*‰", re.ASCII)
UNIT = re.compile(rf"{AT_NUM}({NUM})\s*({UNIT_RE})(?![A-Za-z])", re.ASCII)
RANGE = re.compile(rf"{AT_NUM}({NUM})\s*[-~～]\s*({NUM})", re.ASCII)
NEGATIVE = re.compile(rf"(?<![\dA-Za-z])-({NUM})", re.ASCII)
DOTTED = re.compile(AT_NUM + r"\d+(?:\.\d+){2,}", re.ASCII)
FRACTION = re.compile(r"(?<!\d)(\d+)/(\d+)(?!\d)", re.ASCII)
AMOUNT = re.compile(AT_NUM + NUM, re.ASCII)
# A lone 2 counting things is 两 (两个人), but not as an ordinal (第2个).
MEASURES = "个只位件条本张次天年岁名块辆台种把双对杯瓶斤公米小分秒元美欧英千万克升吨毫厘平立度片粒袋支盒颗份包套顿周"
TWO = re.compile(rf"(?<![\d.第])2(?![\d.])(?=\s*[{MEASURES}])", re.ASCII)
LATIN = re.compile(r"[A-Za-z]")
WORD_RE = re.compile(r"[A-Za-z]+(?:['-][A-Za-z]+)*", re.ASCII)
_abbr = "|".join(re.escape(a) for a in sorted(ABBREVIATIONS, key=len, reverse=True))
ABBREVIATION = re.compile(rf"(?<![A-Za-z])({_abbr})\s*", re.ASCII | re.IGNORECASE)
_titles = "|".join(re.escape(t) for t in TITLES)
TITLE = re.compile(rf"(?<![A-Za-z])({_titles})\s*([A-Z][a-z]+)?", re.ASCII | re.IGNORECASE)
# Top-level domains that make a bare name an address (example.com, voxq.cn/docs).
DOMAINS = "com|cn|net|org|gov|edu|io|cc|info|top|xyz|co|me|tv|hk|tw|uk|jp|us|de|ai|app|dev"
URL = re.compile(
    r"(?:https?://|ftp://|www\.)[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]*[A-Za-z0-9/]"
    rf"|(?<![A-Za-z0-9._%+@-])(?:[A-Za-z0-9-]+\.)+(?:{DOMAINS})(?![A-Za-z0-9.-])(?:/[A-Za-z0-9._~/?#=&%-]*[A-Za-z0-9/])?"
    r"|(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+", re.ASCII)
SCHEME = re.compile(r"^(?:https?|ftp)://", re.ASCII)
VERSION = re.compile(r"(?<![A-Za-z])[vV](\d+(?:\.\d+)*)(?![\d.]|[A-Za-z])", re.ASCII)
# The word 版本 (版本号, with 是/为/: after it) just before a version: its v is not read again.
VERSION_WORD = re.compile(r"版本号?\s*(?:是|为|:)?\s*$")
# Roman numerals as Unicode writes them (Ⅰ to Ⅻ, ⅰ to ⅻ; NFKC would spell Ⅲ as III), and the
# capital Latin ones before a word of stage, type or grade (IV期, II型).
ROMAN = re.compile(r"(?<![A-Za-z])(XI{0,2}|IX|IV|VI{0,3}|I{1,3})(?=\s*[期型级类代度阶])", re.ASCII)
IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])", re.ASCII)
INTERNATIONAL_PHONE = re.compile(r"(?<![\d\w])\+(\d{1,3})((?:[ -]\(?\d{1,4}\)?){2,5})(?![\d-])", re.ASCII)
TIME_RANGE = re.compile(
    r"(?<!\d)(\d{1,2}:\d{2}(?::\d{2})?)\s*[-~～—–至到]\s*(\d{1,2}:\d{2}(?::\d{2})?)(?!\d)", re.ASCII)
UNIT_RANGE = re.compile(r"(?<=[日号月年点分秒时天周])\s*[-~～—–]\s*(?=\d)", re.ASCII)
MODEL_NUMBER = re.compile(r"(?<=[A-Za-z])-?(\d{3,})(?![\d.])", re.ASCII)
ORDINAL = re.compile(r"(?<![\d.])(\d+)(?:st|nd|rd|th)(?![A-Za-z])", re.ASCII)
_iso = "|".join(ISO_CURRENCIES)
_words = "|".join(sorted(CURRENCY_WORDS, key=len, reverse=True))
CURRENCY = re.compile(rf"(US\$|HK\$|[¥$€£]|(?:{_iso})\s*)\s*({NUM})(\s*(?:{_words}))?", re.ASCII)
CURRENCY_AFTER = re.compile(rf"{AT_NUM}({NUM})\s*({_iso})(?![A-Za-z])", re.ASCII)
TEMPERATURE_RANGE = re.compile(
    rf"(?<![\dA-Za-z])(-?{NUM})\s*(?:°C|°F|°|度)?\s*[~～到至]\s*(-?{NUM})\s*(°C|°F|°|度)", re.ASCII)
BELOW_ZERO = re.compile(rf"(?<![\dA-Za-z])-({NUM})\s*(°C|°F|°|度)", re.ASCII)
RATE = re.compile(r"(?<=[\u4e00-\u9fff])\s*/\s*(?=[\u4e00-\u9fff])")
RATE_UNIT = re.compile(rf"(?<=[\u4e00-\u9fff])\s*/\s*({UNIT_RE})(?![A-Za-z])", re.ASCII)
# (?<!\s): tried only where a run of spaces starts, or a long run without a newline is quadratic.
NEWLINES = re.compile(r"(?<!\s)\s*[\r\n\u2028\u2029]+\s*")
DROP = re.compile(rf"[^\u3400-\u4dbf\u4e00-\u9fff{KEEP}]+")
# What the rules can turn into speech, once a character is folded: CJK characters (all DROP
# keeps), ASCII digits and letters (read, spelled) and the symbols read on their own. Every rule
# that writes Chinese starts from one of these, so text with none of them says nothing.
SPEECH_SOURCES = re.compile(rf"[\u3400-\u4dbf\u4e00-\u9fff0-9A-Za-z{re.escape(''.join(SYMBOLS))}]")
PUNCT_RUN = re.compile(f"[{KEEP}]+")


@cache
def _cn2an():
    # Imported on first use: cn2an reads its YAML config when imported.
    import cn2an

    return cn2an


@lru_cache(maxsize=4096)  # cn2an is slow per call, and text repeats the same small numbers
def _number(text: str) -> str:
    """An integer or decimal, read as an amount; a leading - reads 负."""
    if text.startswith("-"):
        return "负" + _number(text[1:])
    whole, _, frac = text.partition(".")
    whole = whole.lstrip("0") or "0"
    # cn2an stops at 16 digits; anything longer is no amount anyone says aloud.
    spoken = whole.translate(DIGITS) if len(whole) > 16 else _cn2an().an2cn(whole)
    return spoken + ("点" + frac.translate(DIGITS) if frac else "")


def _code(digits: str) -> str:
    return digits.translate(CODE_DIGITS)


def _date(m: re.Match) -> str:
    year, _, month, day = m.groups()
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31):
        return m.group(0)
    return f"{year.translate(DIGITS)}年{_number(month)}月{_number(day)}日"


def _year(m: re.Match) -> str:
    first, last = m.groups()
    return first.translate(DIGITS) + (f"到{last.translate(DIGITS)}" if last else "")


def _time(m: re.Match) -> str:
    hour, minute, second = m.groups()
    if int(hour) > 24 or int(minute) > 59 or (second and int(second) > 59):
        return "比".join(_number(part) for part in m.groups() if part)
    spoken = f"{_number(hour)}点"
    if minute != "00" or second:
        spoken += ("零" if minute.startswith("0") and minute != "00" else "") + f"{_number(minute)}分"
    if second:
        spoken += ("零" if second.startswith("0") and second != "00" else "") + f"{_number(second)}秒"
    return spoken


def _amount(m: re.Match) -> str:
    """What is left of the numbers: codes digit by digit, the rest as amounts."""
    run = m.group(0)
    if "." in run:
        return _number(run)
    is_code = (
        (run.startswith("0") and len(run) >= 3)
        or len(run) > 16
        or (len(run) >= 5 and CODE_CONTEXT.search(m.string, max(0, m.start() - 8), m.start()))
        or (len(run) >= 4 and SHORT_CODE_CONTEXT.search(m.string, max(0, m.start() - 8), m.start()))
    )
    return _code(run) if is_code else _number(run)


def _collapse(m: re.Match) -> str:
    """One mark for a run of punctuation: the first sentence end if any, else the first mark."""
    run = m.group(0)
    return next((c for c in run if c in SENTENCE_END), run[0])




def _currency(m: re.Match) -> str:
    symbol, amount, word = m.groups()
    symbol = symbol.strip()
    name = CURRENCIES.get(symbol) or ISO_CURRENCIES[symbol]
    # A currency word right after the amount says the currency already: read it once.
    return amount + (word.strip() if word else name)


def _title(m: re.Match) -> str:
    title, name = m.groups()
    # Dr. Smith -> Smith博士: the title follows the name in Mandarin.
    return f"{name}{TITLES[title.lower()]}" if name else TITLES[title.lower()]


def _url(m: re.Match) -> str:
    """A URL or e-mail address as it is read aloud: symbols named, digits one by one, the
    words left for the English-word rule."""
    text = SCHEME.sub("", m.group(0))
    return "".join(URL_SYMBOLS.get(c, c.translate(DIGITS)) for c in text)


def _version(m: re.Match) -> str:
    spoken = "点".join(_number(part) for part in m.group(1).split("."))
    return spoken if VERSION_WORD.search(m.string, max(0, m.start() - 8), m.start()) else "版本" + spoken


def _english(m: re.Match) -> str:
    word = m.group(0)
    known = WORDS.get(word.lower())
    if known:
        return known
    return "".join(LETTERS[c.lower()] for c in word if c.isalpha())


def _degrees(value: str) -> str:
    return "零下" + _number(value[1:]) if value.startswith("-") else _number(value)


def _temperature_range(m: re.Match) -> str:
    low, high, unit = m.groups()
    return f"{_degrees(low)}到{_degrees(high)}{UNITS.get(unit, unit)}"


def _international(m: re.Match) -> str:
    country, rest = m.groups()
    return "加" + _code(country) + _code(re.sub(r"\D", "", rest))


Tag = tuple  # (start, end, pinyin | None, pinyin source | None, marks): one per character


@dataclass
class Aligned:
    """Text and, per character, where in the user's text it came from ([start, end)), a reading a
    lexicon or SSML fixed for it, and the SSML marks just before it. A rule that rewrites a
    stretch of text gives every character it writes the span of the whole stretch, so 2023 read
    二零二三 still points at the four digits."""

    text: str
    tags: list[Tag]
    trailing_marks: tuple = ()  # marks after the last character

    @classmethod
    def plain(cls, text: str, offset: int = 0) -> "Aligned":
        return cls(text, [(offset + i, offset + i + 1, None, None, ()) for i in range(len(text))])

    def sub(self, regex: re.Pattern, repl: str | Callable[[re.Match], str]) -> "Aligned":
        text, tags = self.text, self.tags
        pieces: list[str] = []
        out: list[Tag] = []
        carry: tuple = ()  # marks of deleted characters, for the next character written
        last = 0

        def keep(upto: int) -> None:
            nonlocal carry
            if upto > last:
                pieces.append(text[last:upto])
                kept = tags[last:upto]
                if carry:
                    first = kept[0]
                    kept = [first[:4] + (carry + first[4],)] + kept[1:]
                    carry = ()
                out.extend(kept)

        for m in regex.finditer(text):
            a, b = m.span()
            replacement = repl if isinstance(repl, str) else repl(m)
            if replacement == text[a:b]:
                continue
            keep(a)
            covered = tags[a:b]
            if covered:
                start, end = min(t[0] for t in covered), max(t[1] for t in covered)
                marks = carry + tuple(mark for t in covered for mark in t[4])
            else:
                at = tags[a][0] if a < len(tags) else (tags[-1][1] if tags else 0)
                start = end = at
                marks = carry
            carry = ()
            if replacement:
                pieces.append(replacement)
                out.append((start, end, None, None, marks))
                out.extend([(start, end, None, None, ())] * (len(replacement) - 1))
            else:
                carry = marks
            last = b
        keep(len(text))
        return Aligned("".join(pieces), out, carry + self.trailing_marks)

    def map_chars(self, fn: Callable[[str], str]) -> "Aligned":
        """Rewrite character by character; what a character becomes keeps its tag."""
        pieces, out, carry = [], [], ()
        for char, tag in zip(self.text, self.tags):
            new = fn(char)
            if not new:
                carry += tag[4]
                continue
            pieces.append(new)
            out.append(tag[:4] + (carry + tag[4],) if carry else tag)
            carry = ()
            out.extend([tag[:4] + ((),)] * (len(new) - 1))
        return Aligned("".join(pieces), out, carry + self.trailing_marks)

    def strip_leading(self, chars: str) -> "Aligned":
        n = len(self.text) - len(self.text.lstrip(chars))
        if not n:
            return self
        marks = tuple(m for t in self.tags[:n] for m in t[4])
        tags = self.tags[n:]
        if tags and marks:
            tags = [tags[0][:4] + (marks + tags[0][4],)] + tags[1:]
        return Aligned(self.text[n:], tags, self.trailing_marks if tags else marks + self.trailing_marks)


def _fold(char: str) -> str:
    return unicodedata.normalize("NFKC", char.translate(PRE_FOLD))


class Interrupted(Exception):
    """Raised by a `should_stop` callable to abandon normalising (the job was canceled)."""


# The rewriting rules, in the order the table at the top describes: (pattern, replacement).
RULES: tuple = (
    (NEWLINES, "。"),
    (URL, _url),
    (TITLE, _title),
    (ABBREVIATION, lambda m: ABBREVIATIONS[m.group(1).lower()]),
    (INTERNATIONAL_PHONE, _international),
    (VERSION, _version),
    (ROMAN, lambda m: str(LATIN_ROMAN[m.group(1)])),
    (IPV4, lambda m: "点".join(_code(p) for p in m.group(0).split("."))),
    (DATE, _date),
    (YEAR, _year),
    (TIME_RANGE, lambda m: f"{m.group(1)}到{m.group(2)}"),
    (TIME, _time),
    (RATIO, "比"),
    (PHONE, lambda m: _code(m.group(0).replace("-", "").replace(" ", "").replace("+86", "加八六"))),
    (THOUSANDS, ""),
    (CURRENCY, _currency),
    (CURRENCY_AFTER, lambda m: m.group(1) + ISO_CURRENCIES[m.group(2)]),
    (PERCENT_RANGE, lambda m: f"百分之{_number(m.group(1))}到{_number(m.group(2))}"),
    (PERCENT, lambda m: "百分之" + _number(m.group(1))),
    (PERMILLE, lambda m: "千分之" + _number(m.group(1))),
    (TEMPERATURE_RANGE, _temperature_range),
    (BELOW_ZERO, lambda m: "零下" + _number(m.group(1)) + UNITS.get(m.group(2), m.group(2))),
    (RATE_UNIT, lambda m: "每" + UNITS[m.group(1)]),
    (UNIT, lambda m: m.group(1) + UNITS[m.group(2)]),
    (RATE, "每"),
    (UNIT_RANGE, "到"),
    (RANGE, lambda m: f"{_number(m.group(1))}到{_number(m.group(2))}"),
    (NEGATIVE, lambda m: "负" + _number(m.group(1))),
    (ORDINAL, lambda m: "第" + _number(m.group(1))),
    (MODEL_NUMBER, lambda m: m.group(1).translate(DIGITS)),
    (DOTTED, lambda m: "点".join(_number(part) for part in m.group(0).split("."))),
    (FRACTION, lambda m: f"{_number(m.group(2))}分之{_number(m.group(1))}"),
    (TWO, "两"),
    (AMOUNT, _amount),
    (WORD_RE, _english),
)


def normalize_aligned(source: Aligned, should_stop: Callable[[], None] | None = None) -> Aligned:
    """`normalize`, keeping each output character's tag (see Aligned). `should_stop` is called
    between rules, and may raise (Interrupted) to abandon a long text."""
    a = source.map_chars(_fold)
    for regex, repl in RULES:
        if should_stop is not None:
            should_stop()
        a = a.sub(regex, repl)
    a = a.map_chars(lambda c: SYMBOLS.get(c, c).translate(PUNCTUATION))
    a = a.sub(DROP, "")
    a = a.sub(PUNCT_RUN, _collapse)
    return a.strip_leading(KEEP)


def could_speak(text: str) -> bool:
    """False only when normalising `text` leaves nothing to say (no false refusals: 兙, which has
    no reading, still passes). One regex search; only text without an obvious source (emoji,
    punctuation) is folded, whole: NFKD holds every source character that folding each character
    by NFKC (as normalize_aligned does) can give, and composes nothing away (e + U+0301 keeps its e)."""
    return bool(SPEECH_SOURCES.search(text)
                or SPEECH_SOURCES.search(unicodedata.normalize("NFKD", text.translate(PRE_FOLD))))


def normalize(text: str) -> str:
    """Raw text to speakable Chinese: only CJK characters and ，。！？；：、 remain."""
    return normalize_aligned(Aligned.plain(text)).text
