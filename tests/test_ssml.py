"""SSML: each element's effect measured on the real voice, and hostile or unsupported documents
refused by the API with a 422 that names the problem, before any job exists."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from shared.text import ssml
from shared.options import SynthesisOptions
from shared.text import frontend
from worker import pipeline


def speak(engine, settings, tmp_path, document: str, name: str = "out", marks: bool = False):
    out = tmp_path / f"{name}.wav"
    marks_path = tmp_path / f"{name}.json" if marks else None
    # Loudness off: these compare levels between documents, which normalising would even out.
    pipeline.speak(engine, document, SynthesisOptions(marks=marks, loudness="off"), out, settings, marks_path,
                      text_type="ssml")
    audio, rate = sf.read(out, dtype="float32")
    return audio, rate, json.loads(marks_path.read_text()) if marks else None


def longest_silence_s(audio: np.ndarray, rate: int, threshold: float = 1e-3) -> float:
    """The longest run of samples quieter than `threshold`, in seconds."""
    quiet = np.abs(audio) < threshold
    longest = run = 0
    for q in quiet:
        run = run + 1 if q else 0
        longest = max(longest, run)
    return longest / rate


def wrap(body: str) -> str:
    return f'<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis" xml:lang="zh-CN">{body}</speak>'


@pytest.mark.parametrize("ms", [300, 800])
def test_a_break_adds_that_much_silence(engine, settings, tmp_path, ms):
    without, rate, _ = speak(engine, settings, tmp_path, wrap('今天天气很好<break time="0ms"/>我们去公园'), "zero")
    with_break, _, _ = speak(engine, settings, tmp_path, wrap(f'今天天气很好<break time="{ms}ms"/>我们去公园'), "break")
    added = longest_silence_s(with_break, rate) - longest_silence_s(without, rate)
    assert abs(added * 1000 - ms) <= 20
    assert abs((len(with_break) - len(without)) / rate * 1000 - ms) <= 20


def test_break_strength_and_leading_break(engine, settings, tmp_path):
    plain, rate, _ = speak(engine, settings, tmp_path, wrap("你好"), "plain")
    lead, _, _ = speak(engine, settings, tmp_path, wrap('<break time="500ms"/>你好'), "lead")
    assert abs((len(lead) - len(plain)) / rate - 0.5) <= 0.02
    assert np.abs(lead[: int(0.49 * rate)]).max() == 0.0  # the silence comes first
    strong, _, _ = speak(engine, settings, tmp_path, wrap('你好<break strength="strong"/>再见'), "strong")
    weak, _, _ = speak(engine, settings, tmp_path, wrap('你好<break strength="weak"/>再见'), "weak")
    expected = 2 * settings.text.sentence_pause_s - settings.text.clause_pause_s
    assert abs((len(strong) - len(weak)) / rate - expected) <= 0.02


@pytest.mark.parametrize(("rate_value", "longer"), [("slow", True), ("x-slow", True), ("fast", False), ("-30%", True),
                                                    ("150%", False)])
def test_rate_changes_duration_in_its_direction(engine, settings, tmp_path, rate_value, longer):
    text = "随着人工智能技术的快速发展"
    base, rate, _ = speak(engine, settings, tmp_path, wrap(text), "base")
    changed, _, _ = speak(engine, settings, tmp_path, wrap(f'<prosody rate="{rate_value}">{text}</prosody>'), "rate")
    ratio = len(changed) / len(base)
    assert (ratio > 1.1) if longer else (ratio < 0.9)


def test_volume_and_emphasis_change_loudness(engine, settings, tmp_path):
    from tests.audio_checks import rms

    text = "我们明天见"
    base, _, _ = speak(engine, settings, tmp_path, wrap(text), "base")
    loud, _, _ = speak(engine, settings, tmp_path, wrap(f'<prosody volume="+6dB">{text}</prosody>'), "loud")
    soft, _, _ = speak(engine, settings, tmp_path, wrap(f'<prosody volume="x-soft">{text}</prosody>'), "soft")
    assert rms(loud) / rms(base) == pytest.approx(2.0, rel=0.05)
    assert rms(soft) / rms(base) == pytest.approx(0.3, rel=0.05)
    stressed, _, _ = speak(engine, settings, tmp_path, wrap(f'<emphasis level="strong">{text}</emphasis>'), "emph")
    assert rms(stressed) > rms(base) * 1.2 and len(stressed) > len(base)


def test_pitch_changes_f0(engine, settings, tmp_path):
    from tests.audio_checks import median_f0

    text = "我们明天见面吧"
    base, rate, _ = speak(engine, settings, tmp_path, wrap(text), "base")
    high, _, _ = speak(engine, settings, tmp_path, wrap(f'<prosody pitch="+4st">{text}</prosody>'), "high")
    assert median_f0(high, rate) / median_f0(base, rate) > 1.15


def test_a_phoneme_changes_the_pinyin_and_the_audio(engine, settings, tmp_path):
    plain = frontend.preview(frontend.plan(wrap("他还钱了"), ssml=True))
    fixed = frontend.preview(frontend.plan(wrap('他<phoneme alphabet="py" ph="hai2">还</phoneme>钱了'), ssml=True))
    assert [c["pinyin"] for c in plain["segments"][0]["chars"]][1] == "huan2"  # the built-in phrase fix
    chars = fixed["segments"][0]["chars"]
    assert (chars[1]["pinyin"], chars[1]["source"]) == ("hai2", "ssml")
    a, _, _ = speak(engine, settings, tmp_path, wrap("银行行长"), "a")
    b, _, _ = speak(engine, settings, tmp_path, wrap('银行<phoneme alphabet="py" ph="xing2 zhang3">行长</phoneme>'), "b")
    assert len(a) != len(b) or not np.allclose(a, b)


@pytest.mark.parametrize(("body", "reading"), [
    ('<say-as interpret-as="digits">2024</say-as>', "二零二四"),
    ('<say-as interpret-as="cardinal">2024</say-as>', "二千零二十四"),
    ('<say-as interpret-as="telephone">+86 138 0013 8000</say-as>', "加八六幺三八零零幺三八零零零"),
    ('<say-as interpret-as="date" format="mdy">03/15/2024</say-as>', "二零二四年三月十五日"),
    ('<say-as interpret-as="date" format="ymd">2024-03-15</say-as>', "二零二四年三月十五日"),
    ('<say-as interpret-as="time">14:05</say-as>', "十四点零五分"),
    ('<say-as interpret-as="characters">AB1</say-as>', "诶比一"),
    ('<say-as interpret-as="currency">¥12.5</say-as>', "十二点五元"),
    ('<sub alias="世界卫生组织">WHO</sub>', "世界卫生组织"),
])
def test_say_as_and_sub_readings(body, reading):
    assert frontend.plan(wrap(body), ssml=True)[0].text == reading


def test_say_as_changes_the_audio(engine, settings, tmp_path):
    amount, _, _ = speak(engine, settings, tmp_path, wrap("2024"), "amount")
    digits, _, _ = speak(engine, settings, tmp_path, wrap('<say-as interpret-as="digits">2024</say-as>'), "digits")
    assert frontend.plan(wrap("2024"), ssml=True)[0].text == "二千零二十四"
    assert len(amount) != len(digits)


def test_marks_sentences_and_offsets(engine, settings, tmp_path):
    document = wrap('<s>你好</s><mark name="here"/><s>在2023年</s><mark name="end"/>')
    _, _, marks = speak(engine, settings, tmp_path, document, "marks", marks=True)
    kinds = [(m["type"], m["value"]) for m in marks if m["type"] != "char"]
    assert kinds == [("sentence", "你好"), ("mark", "here"), ("sentence", "在二零二三年"), ("mark", "end")]
    here = next(m for m in marks if m["value"] == "here")
    second = [m for m in marks if m["type"] == "sentence"][1]
    assert here["start_ms"] == here["end_ms"] <= [m for m in marks if m["value"] == "在"][0]["start_ms"]
    assert document[second["start"]:second["end"]] == "在2023年"
    er = [m for m in marks if m["type"] == "char" and m["value"] == "二"][0]
    assert document[er["start"]:er["end"]] == "2023"
    assert marks[-1]["start_ms"] >= second["end_ms"] - 1


HOSTILE = [
    ('<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
     '<speak>&lol2;</speak>', "forbidden_xml", "entity declarations", (1, None)),
    ('<?xml version="1.0"?>\n<!DOCTYPE speak [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n<speak>&xxe;</speak>',
     "forbidden_xml", "external entity", (2, None)),
    ("<speak>你好\n<prosody rate='slow'>再见</speak>", "malformed_ssml", "mismatched tag", (2, 26)),
    ("<speak>你好", "malformed_ssml", "no element found", (1, None)),
    ("<speak>&nbsp;</speak>", "malformed_ssml", "undefined entity", (1, 8)),
    ("你好", "malformed_ssml", "not an SSML document: SSML starts with <speak>", (1, 1)),
    ("<", "malformed_ssml", "unclosed token", (1, 1)),
    ("<speak><voice name='x'>你好</voice></speak>", "unsupported_ssml",
     "supported elements: speak, p, s, break, prosody, emphasis, say-as, phoneme, sub, mark", (1, 8)),
    ("<speak><audio src='http://example.com/a.wav'/></speak>", "unsupported_ssml", "<audio> is not supported", (1, 8)),
    ("<speak><prosody contour='(0%,+20Hz)'>你好</prosody></speak>", "unsupported_ssml", "no attribute 'contour'",
     (1, 8)),
    ("<speak><prosody rate='5'>你好</prosody></speak>", "invalid_ssml", "range is 0.5 to 2.0", (1, 8)),
    ("<speak><break time='1 minute'/></speak>", "invalid_ssml", "500ms", (1, 8)),
    ("<speak><phoneme alphabet='py' ph='hang2'>行长</phoneme></speak>", "invalid_ssml", "1 syllable(s) for 2", (1, None)),
    ("<speak><phoneme alphabet='py' ph='hang9 zhang3'>行长</phoneme></speak>", "invalid_ssml", "'hang9'", (1, 8)),
    ("<speak><phoneme alphabet='ipa' ph='xɑŋ'>行</phoneme></speak>", "invalid_ssml", 'alphabet="py"', (1, 8)),
    ("<speak><say-as interpret-as='address'>1号</say-as></speak>", "invalid_ssml", "interpret-as='address'", (1, 8)),
    ("<p>你好</p>", "invalid_ssml", "root element must be <speak>", (1, 1)),
]


@pytest.mark.parametrize(("document", "code", "message", "where"), HOSTILE, ids=[h[1] + ":" + h[2] for h in HOSTILE])
def test_hostile_and_unsupported_ssml(client, document, code, message, where):
    with pytest.raises(ssml.SsmlError) as caught:
        ssml.parse(document)
    assert caught.value.code == code and message in str(caught.value)
    line, column = where
    assert caught.value.line == line
    if column is not None:
        assert caught.value.column == column
    # The API answers the same, with the line and column, and stores nothing for a worker.
    for path, body in (("/v1/jobs", {"text": document, "text_type": "ssml"}),
                       ("/v1/text/preview", {"text": document, "text_type": "ssml"})):
        response = client.post(path, json=body)
        assert response.status_code == 422, response.get_json()
        error = response.get_json()["error"]
        assert error["code"] == code and f"line {line}" in error["message"] and error["field"] == "text"
    assert client.get("/v1/jobs").get_json()["jobs"] == []
    speech = client.post("/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": document,
                                                   "text_type": "ssml"})
    assert speech.status_code == 400 and code == speech.get_json()["error"]["code"]


def test_a_billion_laughs_is_refused_fast(client):
    import time

    lol = '<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9)) + "]><speak>&j;</speak>"
    started = time.perf_counter()
    response = client.post("/v1/jobs", json={"text": lol, "text_type": "ssml"})
    assert response.status_code == 422 and time.perf_counter() - started < 1


def test_ssml_size_limit_applies_to_the_whole_document(redis_url, data_dir):
    from api.app import create_app

    app = create_app({"TESTING": True, "VOXQ_SETTINGS": {"redis_url": redis_url, "data_dir": data_dir,
                                                         "limits": {"max_chars": 50}}})
    document = wrap("你好" * 10)
    response = app.test_client().post("/v1/jobs", json={"text": document, "text_type": "ssml"})
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "text_too_long"
