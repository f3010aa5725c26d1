"""Subtitles from marks: sentence cues showing what the user typed, long sentences split, SRT and
WebVTT that real parsers read back; and the endpoint on a real worker's job."""
from __future__ import annotations

import io

import pytest
import srt
import webvtt

from shared import subtitles
from tests.support import wait_for


def marks_for(text: str, sentences: list[tuple[int, int, float, float]]) -> list[dict]:
    """Sentence and char entries as the worker writes them, 100 ms per character."""
    marks = []
    for start, end, start_ms, end_ms in sentences:
        marks.append({"type": "sentence", "value": text[start:end], "start_ms": start_ms, "end_ms": end_ms,
                      "start": start, "end": end})
        spoken = [i for i in range(start, end) if text[i] not in "，。！？ "]
        step = (end_ms - start_ms) / max(len(spoken), 1)
        for n, i in enumerate(spoken):
            marks.append({"type": "char", "value": text[i], "start_ms": start_ms + n * step,
                          "end_ms": start_ms + (n + 1) * step, "start": i, "end": i + 1})
    return marks


def test_cues_show_the_users_text_and_split_long_sentences():
    text = "在2023年，我们一起去了很多很多的地方，看了很多风景。再见！"
    cut = text.index("再")
    marks = marks_for(text, [(0, cut, 0, 3000), (cut, len(text), 3300, 3800)])
    cues = subtitles.cues(marks, text, max_chars=12)
    # Cut after punctuation where a piece allows it, else at the limit.
    assert [c.text for c in cues] == ["在2023年，", "我们一起去了很多很多的地", "方，看了很多风景。", "再见！"]
    assert "".join(c.text for c in cues) == text
    assert cues[0].start_ms == 0 and cues[-1].end_ms == 3800
    assert all(a.end_ms <= b.start_ms for a, b in zip(cues, cues[1:]))


def test_srt_and_vtt_read_back():
    text = "你好。世界 --> 再见！"
    cues = subtitles.cues(marks_for(text, [(0, 3, 0, 800), (3, 13, 1000, 3723.5)]), text, max_chars=50)
    parsed = list(srt.parse(subtitles.srt(cues)))
    assert [p.content for p in parsed] == ["你好。", "世界 --> 再见！"]
    assert parsed[1].start.total_seconds() == 1.0 and parsed[1].end.total_seconds() == pytest.approx(3.724)
    captions = webvtt.from_buffer(io.StringIO(subtitles.vtt(cues)))
    assert [c.text for c in captions] == ["你好。", "世界 -> 再见！"]
    assert captions[1].start == "00:00:01.000" and captions[1].end == "00:00:03.724"


def test_ssml_cues_drop_the_markup():
    document = '<speak><s>在<say-as interpret-as="digits">2023</say-as>年</s></speak>'
    start, end = document.index("在"), document.index("</s>")
    cues = subtitles.cues([{"type": "sentence", "value": "在二零二三年", "start_ms": 0, "end_ms": 900,
                            "start": start, "end": end}], document, 24, ssml=True)
    assert [c.text for c in cues] == ["在2023年"]


@pytest.mark.slow
def test_subtitles_endpoint_on_a_real_job(client, worker):
    text = "今天是2023年3月15日。我们在公园里一起散步，看见了很多美丽的花，还有一些小鸟在树上唱歌！"
    job = client.post("/v1/jobs", json={"text": text, "marks": True}).get_json()
    done = wait_for(client, job["id"])
    assert done["status"] == "succeeded"
    marks = client.get(f"/v1/jobs/{job['id']}/marks").get_json()
    sentences = [m for m in marks if m["type"] == "sentence"]
    assert [text[m["start"]:m["end"]] for m in sentences] == ["今天是2023年3月15日。",
                                                               "我们在公园里一起散步，看见了很多美丽的花，还有一些小鸟在树上唱歌！"]
    twenty = [m for m in marks if m["type"] == "char" and text[m["start"]:m["end"]] == "2023"]
    assert [m["value"] for m in twenty] == list("二零二三")
    response = client.get(f"/v1/jobs/{job['id']}/subtitles?format=srt&max_chars=16")
    assert response.status_code == 200 and response.mimetype == "application/x-subrip"
    parsed = list(srt.parse(response.get_data(as_text=True)))
    assert parsed[0].content == "今天是2023年3月15日。" and len(parsed) >= 3
    assert all(len(p.content) <= 18 for p in parsed[1:])
    assert "".join(p.content for p in parsed) == text
    vtt = client.get(f"/v1/jobs/{job['id']}/subtitles?format=vtt")
    assert vtt.mimetype == "text/vtt"
    captions = webvtt.from_buffer(io.StringIO(vtt.get_data(as_text=True)))
    assert captions[0].text == "今天是2023年3月15日。"
    assert client.get(f"/v1/jobs/{job['id']}/subtitles?format=ass").status_code == 422
    no_marks = client.post("/v1/jobs", json={"text": "你好。"}).get_json()
    wait_for(client, no_marks["id"])
    assert client.get(f"/v1/jobs/{no_marks['id']}/subtitles").status_code == 404
