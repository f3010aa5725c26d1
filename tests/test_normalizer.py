"""Table tests for the text normaliser: every reading rule, with the exact text it must produce."""
import re

import pytest

from shared.text.normalizer import Aligned, normalize, normalize_aligned

CASES = [
    # integers, decimals, negatives, percentages
    ("12345", "一万二千三百四十五"),
    ("共有10人", "共有十人"),
    ("110", "一百一十"),
    ("1001", "一千零一"),
    ("0", "零"),
    ("3.14", "三点一四"),
    ("0.5", "零点五"),
    ("-5", "负五"),
    ("温度为-5度", "温度为零下五度"),
    ("50%", "百分之五十"),
    ("0.5%", "百分之零点五"),
    ("3-5%", "百分之三到五"),
    ("1,234,567元", "一百二十三万四千五百六十七元"),
    ("1/2", "二分之一"),
    ("2个人", "两个人"),
    ("第2个", "第二个"),
    ("2.5个", "二点五个"),
    ("2kg", "两千克"),
    ("1.2.3", "一点二点三"),
    # years and dates
    ("2020年", "二零二零年"),
    ("10年", "十年"),
    ("2024-2025年", "二零二四到二零二五年"),
    ("2024-03-15", "二零二四年三月十五日"),
    ("2024/3/15", "二零二四年三月十五日"),
    ("3月15日", "三月十五日"),
    ("2024年3月15日", "二零二四年三月十五日"),
    # times and ratios
    ("10:30", "十点三十分"),
    ("10:30:15", "十点三十分十五秒"),
    ("10:05", "十点零五分"),
    ("8:00", "八点"),
    ("比分3:2", "比分三比二"),
    # phone numbers and codes
    ("13812345678", "幺三八幺二三四五六七八"),
    ("+86 13812345678", "加八六幺三八幺二三四五六七八"),
    ("电话010-12345678", "电话零幺零幺二三四五六七八"),
    ("400-800-1234", "四零零八零零幺二三四"),
    ("订单号：123456", "订单号：幺二三四五六"),
    ("验证码是98765", "验证码是九八七六五"),
    ("007", "零零七"),
    ("起码10000元", "起码一万元"),
    # money, ranges and units
    ("¥12.5", "十二点五元"),
    ("￥12.5", "十二点五元"),
    ("12元", "十二元"),
    ("$5", "五美元"),
    ("3-5", "三到五"),
    ("3~5个", "三到五个"),
    ("5km", "五公里"),
    ("10kg", "十千克"),
    ("500g", "五百克"),
    ("1.5-2.5kg", "一点五到二点五千克"),
    ("20℃", "二十摄氏度"),
    ("-5°C", "零下五摄氏度"),
    ("100m²", "一百平方米"),
    ("3cm", "三厘米"),
    ("250ml", "二百五十毫升"),
    ("2L", "两升"),
    ("60km/h", "六十公里每小时"),
    # Latin letters are spelled
    ("abc", "诶比西"),
    ("ABC", "诶比西"),
    ("5G网络", "五吉网络"),
    ("COVID-19", "西欧维艾迪十九"),
    # punctuation, whitespace and what is dropped
    ("你好, 世界. 好!", "你好，世界。好！"),
    ("你好，世界！", "你好，世界！"),
    ("真的?!", "真的？"),
    ("你好。。。", "你好。"),
    ("等等...好", "等等。好"),
    ("第一行\n第二行", "第一行。第二行"),
    ("第一行\n\n\n第二行", "第一行。第二行"),
    ("你 好  啊", "你好啊"),
    ("😀你好🎉", "你好"),
    ("\t你\x00好\u200b", "你好"),
    ("《书名》和“引号”", "书名和引号"),
    ("苹果、香蕉；还有：梨", "苹果、香蕉；还有：梨"),
    ("...开始", "开始"),
    ("", ""),
    ("😀!!", ""),
]


@pytest.mark.parametrize(("raw", "expected"), CASES)
def test_normalize(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize("raw", ["价格是1000000000000000000元", "#$%^&*()_+{}|<>~`", "\U0001f600" * 50, "１２３ＡＢＣ"])
def test_output_is_only_cjk_and_chinese_punctuation(raw):
    assert re.fullmatch(r"[\u3400-\u4dbf\u4e00-\u9fff，。！？；：、]*", normalize(raw))


# What users actually type, one table per category, with the reading a Mandarin speaker expects.
READING_TABLES = {
    "international phone numbers": [
        ("+86 138 1234 5678", "加八六幺三八幺二三四五六七八"),
        ("+1 415 555 2671", "加幺四幺五五五五二六七幺"),
        ("+44 20 7946 0958", "加四四二零七九四六零九五八"),
        ("拨打+852 2345-6789", "拨打加八五二二三四五六七八九"),
    ],
    "abbreviations with a period": [
        ("No.1", "第一"),
        ("No. 10名", "第十名"),
        ("e.g. 苹果", "例如苹果"),
        ("水果i.e.苹果", "水果即苹果"),
        ("苹果、香蕉etc.", "苹果、香蕉等等"),
        ("Dr. Smith来了", "艾丝艾姆艾提艾尺博士来了"),
        ("Mr.王", "先生王"),
        ("中国队vs.日本队", "中国队对日本队"),
    ],
    "currency symbol next to a currency word": [
        ("$100美元", "一百美元"),
        ("¥50元", "五十元"),
        ("￥8块", "八块"),
        ("US$5", "五美元"),
        ("HK$10", "十港元"),
        ("RMB 100", "一百元"),
        ("100 USD", "一百美元"),
        ("€20欧元", "二十欧元"),
    ],
    "rates with a slash": [
        ("3000元/月", "三千元每月"),
        ("120次/分", "一百二十次每分"),
        ("60km/h", "六十公里每小时"),
        ("5元/kg", "五元每千克"),
        ("8元/斤", "八元每斤"),
    ],
    "temperatures below zero": [
        ("-5℃", "零下五摄氏度"),
        ("-10°C", "零下十摄氏度"),
        ("气温-3度", "气温零下三度"),
        ("-5~3℃", "零下五到三摄氏度"),
        ("-10~-2°C", "零下十到零下二摄氏度"),
    ],
    "versions, models, IP addresses, URLs and e-mail": [
        ("v2.0.1", "版本二点零点一"),
        ("V1.10版", "版本一点十版"),
        ("RTX4090", "阿尔提艾克斯四零九零"),
        ("GTX-1080", "吉提艾克斯一零八零"),
        ("192.168.1.1", "幺九二点幺六八点幺点幺"),
        ("10.0.0.255", "幺零点零点零点二五五"),
        ("www.baidu.com", "三达布留点百度点康姆"),
        ("https://google.com/a1", "谷歌点康姆斜杠诶一"),
        ("ab@qq.com", "诶比艾特扣扣点康姆"),
    ],
    "ordinals, dates with 号 and ranges of times": [
        ("1st", "第一"),
        ("2nd", "第二"),
        ("23rd", "第二十三"),
        ("4th", "第四"),
        ("第2名", "第二名"),
        ("3月15号", "三月十五号"),
        ("5月2号", "五月二号"),
        ("2024年12月31号", "二零二四年十二月三十一号"),
        ("1日-5日", "一日到五日"),
        ("9:00-17:30", "九点到十七点三十分"),
        ("8:30至12:00", "八点三十分到十二点"),
        ("上午9点-11点", "上午九点到十一点"),
    ],
    "English words": [
        ("Google和Microsoft", "谷歌和微软"),
        ("iPhone 15", "爱疯十五"),
        ("CPU很快", "西披优很快"),
        ("OK", "欧克"),
    ],
}


@pytest.mark.parametrize(("raw", "expected"),
                         [pytest.param(raw, expected, id=f"{category}: {raw}")
                          for category, cases in READING_TABLES.items() for raw, expected in cases])
def test_reading_tables(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize(("raw", "char", "source"), [
    ("在2023年", "二", "2023"),  # a year read digit by digit points at all four digits
    ("价格¥12.5", "元", "¥12.5"),
    ("你好", "好", "好"),
    ("A 你", "你", "你"),
    ("iPhone真好", "疯", "iPhone"),
])
def test_each_character_knows_where_it_came_from(raw, char, source):
    aligned = normalize_aligned(Aligned.plain(raw))
    start, end = aligned.tags[aligned.text.index(char)][:2]
    assert raw[start:end] == source


def test_offsets_follow_an_offset_start():
    aligned = normalize_aligned(Aligned.plain("你好", offset=10))
    assert [t[:2] for t in aligned.tags] == [(10, 11), (11, 12)]
