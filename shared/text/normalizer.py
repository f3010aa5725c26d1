"""Text normalisation: raw user text to Chinese characters and ，。！？；：、, numbers and symbols read out."""
from __future__ import annotations

import logging
import re
import unicodedata
from functools import cache

logger = logging.getLogger(__name__)

# Reading rules, applied in this order to the NFKC-folded text (documented here because
# callers depend on them):
#  * dates 2024-03-15, 2024/3/15, 2024.3.15 -> 二零二四年三月十五日; a 4-digit number before 年 is
#    a year, read digit by digit; shorter ones are amounts (10年 -> 十年);
#  * times 10:30 -> 十点三十分, 10:30:15 -> 十点三十分十五秒, 10:00 -> 十点; other a:b -> a比b;
#  * phone numbers and codes are read digit by digit with 1 as 幺 (as Chinese speakers say
#    numbers to be written down): an 11-digit mobile number 1[3-9]xxxxxxxxx, dashed numbers
#    0xx(x)-xxxxxxx(x) and xxx(x)-xxx(x)-xxxx, a run of 3+ digits that starts with 0 (007),
#    a run of 5+ digits right after a word that names a code (号码, 编号, 单号, 账号, 卡号,
#    验证码, 邮编, 电话, QQ, ID ..., optionally followed by 是/为/:), e.g. 订单号123456, and
#    any run over 16 digits (longer than cn2an reads as an amount);
#  * money ¥12.5 -> 十二点五元, $5 -> 五美元 (also € 欧元, £ 英镑); 50% -> 百分之五十,
#    3-5% -> 百分之三到五; ranges 3-5 / 3~5 -> 三到五; units after a number (5km -> 五公里);
#  * -5 -> 负五 (a minus not after a digit or letter), 3.14 -> 三点一四, 1/2 -> 二分之一,
#    1,234 -> 一千二百三十四, 2 before a measure word -> 两 (2个 -> 两个), every other digit
#    run -> an integer (cn2an);
#  * Latin letters are spelled one by one, case-insensitively, with Chinese approximations
#    (A 诶, B 比, C 西 ...: LETTERS below), because the Baker voice has no English phones;
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

# Case matters: m is metres, M is a letter; longer spellings first so km wins over m.
UNITS = {
    "km/h": "公里每小时", "m/s": "米每秒", "km^2": "平方公里", "cm^2": "平方厘米",
    "m^2": "平方米", "m^3": "立方米", "cm^3": "立方厘米", "°C": "摄氏度", "°F": "华氏度",
    "kWh": "千瓦时", "kHz": "千赫兹", "MHz": "兆赫兹", "GHz": "吉赫兹", "kW": "千瓦",
    "km": "公里", "cm": "厘米", "mm": "毫米", "nm": "纳米", "kg": "千克", "mg": "毫克",
    "ml": "毫升", "mL": "毫升", "min": "分钟", "ms": "毫秒", "Hz": "赫兹", "°": "度",
    "m": "米", "g": "克", "t": "吨", "L": "升", "l": "升", "h": "小时", "s": "秒", "W": "瓦",
}
CURRENCIES = {"¥": "元", "$": "美元", "€": "欧元", "£": "英镑"}
SYMBOLS = {"&": "和", "+": "加", "=": "等于", "×": "乘", "÷": "除以", "〇": "零"}
PUNCTUATION = str.maketrans(",.!?;:", "，。！？；：")
SENTENCE_END = "。！？"
KEEP = "，。！？；：、"

# NFKC would turn m² into m2 and ㎡ into m2, which then reads as "m two".
PRE_FOLD = str.maketrans({"²": "^2", "³": "^3", "㎡": "m^2", "㎥": "m^3", "㎠": "cm^2", "…": "。"})

# re.ASCII wherever digits are matched: \d must not match other scripts' digits, which cn2an cannot read.
NUM = r"\d+(?:\.\d+)?"
CODE_CONTEXT = re.compile(
    r"(?:号码|编号|单号|账号|帐号|卡号|学号|工号|尾号|证号|代码|密码|验证码|邮编|电话|手机|QQ|ID)(?:是|为|:|\s)*$",
    re.IGNORECASE | re.ASCII,
)
UNIT_RE = "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))

DATE = re.compile(r"(?<!\d)(\d{4})([-/.])(\d{1,2})\2(\d{1,2})(?!\d)", re.ASCII)
YEAR = re.compile(r"(?<!\d)(\d{4})(?:\s*[-~到至]\s*(\d{4}))?(?=年)", re.ASCII)
TIME = re.compile(r"(?<!\d)(\d{1,2}):(\d{2})(?::(\d{2}))?(?!\d)", re.ASCII)
RATIO = re.compile(r"(?<=\d):(?=\d)", re.ASCII)
PHONE = re.compile(
    r"(?<!\d)(?:(?:\+86[- ]?)?1[3-9]\d{9}|0\d{2,3}-\d{7,8}|\d{3,4}-\d{3,4}-\d{4})(?![\d-])", re.ASCII
)
THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))", re.ASCII)
CURRENCY = re.compile(rf"([¥$€£])\s*({NUM})", re.ASCII)
PERCENT_RANGE = re.compile(rf"({NUM})\s*%?\s*[-~～]\s*({NUM})\s*%", re.ASCII)
PERCENT = re.compile(rf"(-?{NUM})\s*%", re.ASCII)
PERMILLE = re.compile(rf"(-?{NUM})\s*‰", re.ASCII)
UNIT = re.compile(rf"({NUM})\s*({UNIT_RE})(?![A-Za-z])", re.ASCII)
RANGE = re.compile(rf"({NUM})\s*[-~～]\s*({NUM})", re.ASCII)
NEGATIVE = re.compile(rf"(?<![\dA-Za-z])-({NUM})", re.ASCII)
DOTTED = re.compile(r"\d+(?:\.\d+){2,}", re.ASCII)
FRACTION = re.compile(r"(?<!\d)(\d+)/(\d+)(?!\d)", re.ASCII)
AMOUNT = re.compile(NUM, re.ASCII)
# A lone 2 counting things is 两 (两个人), but not as an ordinal (第2个).
MEASURES = "个只位件条本张次天年岁名块辆台种把双对杯瓶斤公米小分秒元美欧英千万克升吨毫厘平立度"
TWO = re.compile(rf"(?<![\d.第])2(?![\d.])(?=\s*[{MEASURES}])", re.ASCII)
LATIN = re.compile(r"[A-Za-z]")
NEWLINES = re.compile(r"\s*[\r\n\u2028\u2029]+\s*")
DROP = re.compile(rf"[^\u3400-\u4dbf\u4e00-\u9fff{KEEP}]+")
PUNCT_RUN = re.compile(f"[{KEEP}]+")


@cache
def _cn2an():
    # Imported on first use: cn2an reads its YAML config when imported.
    import cn2an

    return cn2an


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
    )
    return _code(run) if is_code else _number(run)


def _collapse(m: re.Match) -> str:
    """One mark for a run of punctuation: the first sentence end if any, else the first mark."""
    run = m.group(0)
    return next((c for c in run if c in SENTENCE_END), run[0])


def normalize(text: str) -> str:
    """Raw text to speakable Chinese: only CJK characters and ，。！？；：、 remain."""
    text = unicodedata.normalize("NFKC", text.translate(PRE_FOLD))
    text = NEWLINES.sub("。", text)
    text = DATE.sub(_date, text)
    text = YEAR.sub(_year, text)
    text = TIME.sub(_time, text)
    text = RATIO.sub("比", text)
    text = PHONE.sub(lambda m: _code(m.group(0).replace("-", "")), text)
    text = THOUSANDS.sub("", text)
    text = CURRENCY.sub(lambda m: m.group(2) + CURRENCIES[m.group(1)], text)
    text = PERCENT_RANGE.sub(lambda m: f"百分之{_number(m.group(1))}到{_number(m.group(2))}", text)
    text = PERCENT.sub(lambda m: "百分之" + _number(m.group(1)), text)
    text = PERMILLE.sub(lambda m: "千分之" + _number(m.group(1)), text)
    text = UNIT.sub(lambda m: m.group(1) + UNITS[m.group(2)], text)
    text = RANGE.sub(lambda m: f"{_number(m.group(1))}到{_number(m.group(2))}", text)
    text = NEGATIVE.sub(lambda m: "负" + _number(m.group(1)), text)
    text = DOTTED.sub(lambda m: "点".join(_number(part) for part in m.group(0).split(".")), text)
    text = FRACTION.sub(lambda m: f"{_number(m.group(2))}分之{_number(m.group(1))}", text)
    text = TWO.sub("两", text)
    text = AMOUNT.sub(_amount, text)
    text = LATIN.sub(lambda m: LETTERS[m.group(0).lower()], text)
    text = "".join(SYMBOLS.get(c, c) for c in text).translate(PUNCTUATION)
    text = DROP.sub("", text)
    text = PUNCT_RUN.sub(_collapse, text)
    return text.lstrip(KEEP)
