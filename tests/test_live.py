"""Live sessions at /v1/live (api/live.py, api/live_session.py) against a real cluster: a plain
`websockets` client feeds text the way a model writes it and hears it sentence by sentence; cancel,
flush, the pause rule, formats, the saved audio and the errors."""
from __future__ import annotations

import io
import wave

import pytest
import requests

from tests.live_client import Session

# Three sessions at once per API process: every test here opens sessions one after another, so a
# session that ended without letting go of its place would soon refuse the next.
pytestmark = pytest.mark.live_cluster(worker_concurrency=2, api_env={"VOXQ_LIVE_SESSIONS_PER_PROCESS": 3})

TWO = "你好，欢迎使用语音合成。今天天气很好，我们去公园散步吧！"
LONG = "随着人工智能技术的快速发展，越来越多的企业开始使用智能语音助手。今天的天气非常好，我们一起去公园散步吧。" * 3


@pytest.fixture
def session(cluster):
    opened = Session(cluster.url)
    yield opened
    opened.close()


def job(cluster, job_id: str) -> dict:
    return requests.get(f"{cluster.url}/v1/jobs/{job_id}", timeout=10).json()


def test_a_token_stream_is_spoken_sentence_by_sentence(cluster, session, sample_rate):
    started = session.start(format="pcm", marks=True)
    assert started["type"] == "started" and len(started["session_id"]) == 32
    assert started["sample_rate"] == sample_rate  # raw PCM: the client must know its rate
    session.feed(TWO, size=2, every_s=0.03)
    session.send(type="finish")
    finished = session.until_event("finished")
    assert session.until_closed() == 1000

    # Each sentence: started, its audio, ended; in order, at the offsets of the text sent.
    kinds = session.kinds()
    assert kinds[0] == "started" and kinds[-1] == "finished"
    begun = [e for e in session.events if e["type"] == "sentence_started"]
    ended = [e for e in session.events if e["type"] == "sentence_ended"]
    assert [(e["start"], e["end"]) for e in begun] == [(0, 12), (12, len(TWO))]
    assert [TWO[e["start"]:e["end"]] for e in ended] == [e["text"] for e in ended] == ["你好，欢迎使用语音合成。",
                                                                                      "今天天气很好，我们去公园散步吧！"]
    first_audio = session.kinds().index("audio")
    assert session.kinds().index("sentence_started") < first_audio < session.kinds().index("sentence_ended")
    # The audio is the sentences' durations of 16-bit PCM at the engine's rate, and their times add up.
    audio = session.audio()
    assert ended[0]["audio_start_ms"] == 0 and ended[1]["audio_start_ms"] == ended[0]["audio_end_ms"]
    # (each sentence's duration is kept to the millisecond)
    assert len(audio) == pytest.approx(ended[-1]["audio_end_ms"] / 1000 * sample_rate * 2, abs=len(ended) * sample_rate * 2e-3)
    assert finished["sentences"] == 2 and finished["characters"] == len(TWO)
    # Marks point into the session's text and its audio: every character mark reads what it says.
    chars = [m for e in ended for m in e["marks"] if m["type"] == "char"]
    assert chars and all(TWO[m["start"]:m["end"]] == m["value"] for m in chars)
    assert [m["start_ms"] for m in chars] == sorted(m["start_ms"] for m in chars)
    assert chars[-1]["start_ms"] > ended[0]["audio_end_ms"]
    # Each sentence was a job of the cluster; the session is one too, succeeded, with its text's size.
    assert all(job(cluster, e["job_id"])["status"] == "succeeded" for e in ended)
    record = job(cluster, started["session_id"])
    assert record["status"] == "succeeded" and record["text_chars"] == len(TWO)
    assert record["result"] is None  # no audio kept without "save"


def test_the_saved_audio_is_the_audio_that_was_sent(cluster, session, sample_rate):
    started = session.start(format="wav", save=True, loudness="off")
    session.feed(TWO, size=5)
    session.send(type="finish")
    finished = session.until_event("finished")
    sent = session.audio()
    with wave.open(io.BytesIO(sent)) as streamed:  # one streaming header, then the PCM
        assert streamed.getframerate() == sample_rate
        sent_pcm = streamed.readframes(10**9)
    assert finished["audio_url"] == f"/v1/jobs/{started['session_id']}/audio"
    kept = requests.get(cluster.url + finished["audio_url"], timeout=10)
    assert kept.status_code == 200
    with wave.open(io.BytesIO(kept.content)) as saved:
        assert saved.getframerate() == sample_rate
        assert saved.readframes(10**9) == sent_pcm
    assert job(cluster, started["session_id"])["result"]["duration_s"] == pytest.approx(
        len(sent_pcm) / 2 / sample_rate, abs=0.01)


def test_flush_speaks_an_unfinished_sentence_and_a_pause_speaks_a_clause(session):
    session.start(format="pcm")
    session.send(type="text", text="请稍等")
    session.send(type="flush")
    first = session.until_event("sentence_ended")
    assert first["text"] == "请稍等"
    # No full stop, but a clause mark and then a pause: the clause is spoken, the rest waits.
    session.send(type="text", text="我们马上为您查询，然后")
    second = session.until_event("sentence_ended", index=1)
    assert second["text"] == "我们马上为您查询，"
    assert not [e for e in session.events if e["type"] == "sentence_started" and e["index"] == 2]
    session.send(type="finish")
    last = session.until_event("sentence_ended", index=2)
    assert last["text"] == "然后" and (last["start"], last["end"]) == (12, 14)  # after 请稍等 and the clause
    session.until_event("finished")


def test_cancel_sends_no_audio_after_its_acknowledgement_and_stops_the_work(cluster, session):
    session.start(format="pcm")
    session.feed(LONG, size=40)
    session.until(lambda: b"" != session.audio())
    session.send(type="cancel")
    canceled = session.until_event("canceled")
    at = session.items.index(canceled)
    # Whatever else comes (nothing of the canceled text), no audio frame follows the acknowledgement.
    session.send(type="text", text="好的。")
    after = session.until_event("sentence_ended", text="好的。")
    between = session.items[at + 1:session.items.index(next(e for e in session.events
                                                             if e["type"] == "sentence_started" and e["text"] == "好的。"))]
    assert not [i for i in between if isinstance(i, bytes)]
    assert canceled["sentences"] >= 1
    # The canceled sentences' jobs stopped: canceled, not spoken to the end.
    spoken = {e["job_id"] for e in session.events if e["type"] == "sentence_ended"}
    stopped = [e["job_id"] for e in session.events if e["type"] == "sentence_started" and e["job_id"] not in spoken]
    assert stopped and all(job(cluster, j)["status"] == "canceled" for j in stopped)
    # The session goes on after a barge-in, offsets counting all the text sent.
    assert after["start"] == len(LONG)
    session.send(type="finish")
    assert session.until_event("finished")["characters"] == len(LONG) + 3


@pytest.mark.parametrize("fmt, rate, per_second", [("mulaw-raw", 8000, 8000), ("pcm", 16000, 32000)])
def test_telephone_and_resampled_formats(session, fmt, rate, per_second):
    started = session.start(format=fmt, sample_rate=rate if fmt == "pcm" else None)
    assert (started["format"], started["sample_rate"] or 8000) == (fmt, rate)
    session.feed("您好，这里是客服中心。", size=3)
    session.send(type="finish")
    ended = session.until_event("sentence_ended")
    session.until_event("finished")
    assert len(session.audio()) == pytest.approx(ended["audio_end_ms"] / 1000 * per_second, rel=0.01)


def test_bad_messages_are_refused_and_the_session_goes_on(session):
    session.start(format="pcm")
    session.send(type="shout")
    assert session.next_event() == {"type": "error", "code": "invalid_request", "field": "type",
                                    "message": "type must be one of text, flush, cancel, finish"}
    session.ws.send(b"\x00\x01")
    assert session.next_event()["code"] == "invalid_request"
    session.ws.send("{not json")
    assert "JSON" in session.next_event()["message"]
    session.send(type="text", text="还在。")
    session.send(type="finish")
    assert session.until_event("finished")["sentences"] == 1


@pytest.mark.parametrize("start, field", [
    ({"format": "flac"}, "format"),
    ({"format": "pcm", "speed": 9}, "speed"),
    ({"format": "pcm", "emotion": "sleepy"}, "emotion"),
    ({"format": "pcm", "lexicons": ["nope"]}, "lexicons"),
    ({"format": "pcm", "pronunciations": {"草地": "cao9"}}, "pronunciations"),
])
def test_a_bad_start_gets_an_error_and_a_close_code(cluster, start, field):
    client = Session(cluster.url)
    try:
        error = client.start(**start)
        assert error["type"] == "error" and error["field"] == field and error["message"]
        assert client.until_closed() == 4400
    finally:
        client.close()


def test_the_first_message_must_be_a_start(cluster):
    client = Session(cluster.url)
    try:
        client.send(type="text", text="你好")
        assert client.next_event()["code"] == "invalid_request"
        assert client.until_closed() == 4400
    finally:
        client.close()


def spoken(cluster, text: str, **options) -> bytes:
    client = Session(cluster.url)
    try:
        client.start(format="pcm", loudness="off", **options)
        client.feed(text)
        client.send(type="finish")
        client.until_event("finished")
        return client.audio()
    finally:
        client.close()


def test_pronunciations_change_what_is_said_and_go_with_the_session(cluster):
    plain = spoken(cluster, "行长来了。")  # the bank's president: hang2 zhang3
    assert spoken(cluster, "行长来了。") == plain  # the voice is deterministic
    assert spoken(cluster, "行长来了。", pronunciations={"行长": "xing2 zhang3"}) != plain
    lexicons = requests.get(f"{cluster.url}/v1/lexicons", timeout=10).json()["lexicons"]
    assert not [n for n in lexicons if n["name"].startswith("live-")]


def test_each_sentence_of_one_message_is_its_own_and_is_spoken_as_one_chunk(cluster, session):
    session.start(format="pcm")
    session.send(type="text", text=LONG[:104])  # four sentences in one message
    session.send(type="finish")
    session.until_event("finished")
    ended = [e for e in session.events if e["type"] == "sentence_ended"]
    assert [e["text"] for e in ended] == [LONG[:32], LONG[32:52], LONG[52:84], LONG[84:104]]
    # A sentence is one chunk however long: its audio streams as it is spoken, and it never waits
    # on its tenant's dispatch for a second chunk while the first plays.
    progress = job(cluster, ended[0]["job_id"])["progress"]
    assert progress["chunks_total"] == 1 and progress["segments_total"] >= 2
    record = job(cluster, ended[0]["job_id"])
    assert record["metadata"] == {"live_session": session.events[0]["session_id"], "sentence": 0}


def test_ended_sessions_let_go_of_their_places(cluster):
    for _ in range(8):  # more than the two API processes' three places each
        client = Session(cluster.url)
        try:
            assert client.start(format="pcm")["type"] == "started"
            client.send(type="text", text="好。")
            client.send(type="finish")
            client.until_event("finished")
        finally:
            client.close()


@pytest.mark.parametrize("path", ["/v1/live", "/api-ws/v1/inference"])
def test_a_plain_request_to_a_websocket_path_is_told_to_upgrade(cluster, path):
    answer = requests.get(cluster.url + path, timeout=10)
    assert answer.status_code == 426 and answer.headers["Upgrade"] == "websocket"
    assert answer.json()["error"]["code"] == "upgrade_required"


def test_sentences_are_made_as_the_listener_needs_them_and_it_never_runs_dry(cluster, session, sample_rate):
    session.start(format="pcm")
    session.send(type="text", text=LONG[:156])  # six sentences, 30 s of speech, at once
    session.send(type="finish")
    session.until_event("finished", timeout=120)
    begun = [e for e in session.events if e["type"] == "sentence_started"]
    accepted = [requests.get(f"{cluster.url}/v1/jobs/{e['job_id']}", params={"timings": 1},
                             timeout=10).json()["timings"]["accepted"] for e in begun]
    # Paced by what the listener hears (VOXQ_LIVE_AHEAD_S, 4 s by default): a sentence whose audio
    # starts well past that is submitted about that much later, not with the first.
    for event, at in zip(begun, accepted):
        if event["audio_start_ms"] > 8000:
            assert at - accepted[0] > event["audio_start_ms"] / 1000 - 4 - 2
    # A client that plays from the first frame never runs dry: each frame comes before it is needed
    # (a quarter of a second of leeway for a busy test machine; the session keeps 4 s ahead).
    frames = [(at, len(item)) for at, item in zip(session.times, session.items) if isinstance(item, bytes)]
    played = 0.0
    for at, size in frames:
        assert at - frames[0][0] <= played + 0.25, f"ran dry at {played:.2f} s"
        played += size / 2 / sample_rate
    assert played > 25
