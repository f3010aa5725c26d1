"""Aliyun's `dashscope` SDK from PyPI, unchanged but for its URL, against a live cluster
(api/dashscope.py): CosyVoice's duplex tasks (call, streaming with sentence events and word times,
flush, cancel, formats, hot_fix, a pooled connection's tasks one after another) and Sambert's call
with its timestamps, and the errors each shows its caller."""
from __future__ import annotations

import io
import json
import wave

import dashscope
import pytest
import requests
import soundfile
from dashscope.audio.tts import SpeechSynthesizer as SambertSynthesizer
from dashscope.audio.tts_v2 import AudioFormat, ResultCallback, SpeechSynthesizer, SpeechSynthesizerObjectPool
from dashscope.common.error import RequestFailure

from shared import keys
from tests.support import Gunicorn, wait_until

TWO = "你好，欢迎使用语音合成。今天天气很好，我们去公园散步吧！"
SENTENCES = ["你好，欢迎使用语音合成。", "今天天气很好，我们去公园散步吧！"]
LONG = "随着人工智能技术的快速发展，越来越多的企业开始使用智能语音助手。今天的天气非常好，我们一起去公园散步吧。" * 2
# 行长 reads hang2 zhang3 unless told otherwise.
BANK = "银行行长来了。"


@pytest.fixture(scope="module")
def url(cluster) -> str:
    return cluster.url.replace("http", "ws", 1) + "/api-ws/v1/inference"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    # Without keys configured, any key is the one anonymous tenant's; the SDK insists on one.
    monkeypatch.setattr(dashscope, "api_key", "sk-any")


class Collector(ResultCallback):
    """What a callback-mode synthesizer hears, in order."""

    def __init__(self):
        self.audio: list[bytes] = []
        self.events: list[dict] = []
        self.errors: list[dict] = []

    def on_data(self, data: bytes) -> None:
        self.audio.append(bytes(data))

    def on_event(self, message: str) -> None:
        self.events.append(json.loads(message))

    def on_error(self, message) -> None:
        self.errors.append(json.loads(message))

    def outputs(self, kind: str) -> list[dict]:
        return [e["payload"]["output"] for e in self.events if e["payload"]["output"]["type"] == kind]

    def jobs(self, kind: str) -> list[str]:
        return [e["header"]["attributes"]["voxq_job_id"] for e in self.events
                if e["payload"]["output"]["type"] == kind]

    def session_id(self) -> str:
        return self.events[0]["header"]["attributes"]["voxq_session_id"]


def voxq_voices(cluster) -> list[str]:
    engines = requests.get(f"{cluster.url}/v1/voices", timeout=10).json()["engines"]
    return [v["name"] for engine in engines for v in engine["voices"]]


def test_call_returns_the_sdk_default_mp3(cluster, url):
    synthesizer = SpeechSynthesizer(model="cosyvoice-v2", voice="longxiaochun_v2", url=url)
    audio = synthesizer.call(SENTENCES[0])
    samples, rate = soundfile.read(io.BytesIO(audio))
    assert rate == 22050 and len(samples) / rate > 0.8  # AudioFormat.DEFAULT: mp3 at 22050 Hz, as the SDK assumes
    finished = synthesizer.get_response()
    assert finished["header"]["event"] == "task-finished"
    assert finished["header"]["task_id"] == synthesizer.get_last_request_id()
    assert finished["payload"]["usage"]["characters"] == len(SENTENCES[0])
    # The task was a voxq live session; its record names the DashScope task.
    session = cluster.job(finished["header"]["attributes"]["voxq_session_id"])
    assert session["status"] == "succeeded"
    assert session["metadata"]["dashscope"] == {"task_id": synthesizer.get_last_request_id(),
                                                "model": "cosyvoice-v2", "voice": "longxiaochun_v2"}


def test_streamed_text_is_spoken_sentence_by_sentence_with_word_times(cluster, url):
    heard = Collector()
    synthesizer = SpeechSynthesizer(model="cosyvoice-v1", voice="longxiaochun",
                                    format=AudioFormat.PCM_16000HZ_MONO_16BIT, callback=heard, url=url,
                                    additional_params={"word_timestamp_enabled": True})
    for at in range(0, len(TWO), 2):  # a model's token stream
        synthesizer.streaming_call(TWO[at:at + 2])
    synthesizer.streaming_complete()
    assert heard.errors == []

    assert [o["original_text"] for o in heard.outputs("sentence-begin")] == SENTENCES
    ended = heard.outputs("sentence-end")
    assert [o["original_text"] for o in ended] == SENTENCES
    assert [o["sentence"]["index"] for o in ended] == [0, 1]
    usage = [e["payload"]["usage"]["characters"] for e in heard.events
             if e["payload"]["output"]["type"] == "sentence-end"]
    assert usage == [len(SENTENCES[0]), len(TWO)]
    # Each word is where it says in its sentence, and the words' times run on through the task's audio.
    words = [w for o in ended for w in o["sentence"]["words"]]
    assert all(o["original_text"][w["begin_index"]:w["end_index"]] == w["text"]
               for o in ended for w in o["sentence"]["words"])
    assert "".join(w["text"] for w in ended[0]["sentence"]["words"]) == "你好欢迎使用语音合成"
    starts = [w["begin_time"] for w in words]
    assert starts == sorted(starts) and all(w["end_time"] >= w["begin_time"] for w in words)
    # 16 kHz 16-bit PCM, as long as the sentences' jobs say they are.
    durations = [cluster.job(j)["result"]["duration_s"] for j in heard.jobs("sentence-end")]
    pcm = b"".join(heard.audio)
    assert len(pcm) == pytest.approx(sum(durations) * 16000 * 2, abs=len(durations) * 16000 * 2 * 2e-3)
    assert words[-1]["end_time"] <= sum(durations) * 1000 + 1
    assert words[-1]["begin_time"] > durations[0] * 1000  # the second sentence's words come after the first's audio


def test_a_wav_format_at_the_url_with_a_trailing_slash(url):
    synthesizer = SpeechSynthesizer(model="cosyvoice-v3-flash", voice="longanyang",
                                    format=AudioFormat.WAV_24000HZ_MONO_16BIT, url=url + "/")
    audio = synthesizer.call("请稍等。")
    with wave.open(io.BytesIO(audio)) as heard:  # one streaming header, then the PCM
        assert (heard.getframerate(), heard.getnchannels(), heard.getsampwidth()) == (24000, 1, 2)
        assert len(heard.readframes(10**9)) > 24000 * 2 * 0.3


def test_flush_speaks_an_unfinished_sentence_and_cancel_stops_the_audio(cluster, url):
    heard = Collector()
    synthesizer = SpeechSynthesizer(model="cosyvoice-v3-plus", voice="longanhuan",
                                    format=AudioFormat.PCM_22050HZ_MONO_16BIT, callback=heard, url=url)
    synthesizer.streaming_call("请稍等")
    synthesizer.streaming_flush()
    wait_until(lambda: heard.outputs("sentence-end"), 60, what="the flushed sentence")
    assert heard.outputs("sentence-end")[0]["original_text"] == "请稍等"

    synthesizer.streaming_call(LONG)
    wait_until(lambda: len(heard.outputs("sentence-begin")) > 1, 60, what="the long text's first sentence")
    synthesizer.streaming_cancel()  # waits for task-finished
    assert synthesizer.get_response()["header"]["event"] == "task-finished"
    # The canceled sentences' jobs stopped: what began but never ended was canceled, and most of
    # the long text was never spoken.
    spoken = set(heard.jobs("sentence-end"))
    stopped = [j for j in heard.jobs("sentence-begin") if j not in spoken]
    assert stopped and all(cluster.job(j)["status"] == "canceled" for j in stopped)
    assert len(spoken) < 1 + LONG.count("。")
    session = cluster.job(synthesizer.get_response()["header"]["attributes"]["voxq_session_id"])
    assert session["status"] == "succeeded"


def test_a_pooled_connection_runs_tasks_one_after_another_and_hot_fix_changes_the_reading(cluster, url):
    pool = SpeechSynthesizerObjectPool(max_size=1, url=url)
    try:
        plain = pool.borrow_synthesizer(model="cosyvoice-v1", voice="longxiaochun",
                                        format=AudioFormat.PCM_22050HZ_MONO_16BIT)
        connection = plain.ws
        first = plain.call(BANK)
        pool.return_synthesizer(plain)

        heard = Collector()
        fixed = pool.borrow_synthesizer(model="cosyvoice-v1", voice="longxiaochun",
                                        format=AudioFormat.PCM_22050HZ_MONO_16BIT, callback=heard,
                                        additional_params={"hot_fix": {"pronunciation": [{"行长": "xing2 chang2"}]}})
        assert fixed is plain and fixed.ws is connection  # the same socket, a second task
        fixed.streaming_call(BANK)
        wait_until(lambda: heard.outputs("sentence-end"), 60, what="the sentence")
        # While the task runs, its pronunciations are a lexicon of its own (named for its session),
        # which its sentences' jobs read: the preview with that lexicon shows the reading given.
        shown = requests.post(f"{cluster.url}/v1/text/preview",
                              json={"text": "行长", "lexicons": [f"live-{heard.session_id()}"]}, timeout=10).json()
        assert [c["pinyin"] for c in shown["segments"][0]["chars"]] == ["xing2", "chang2"]
        fixed.streaming_complete()
        assert heard.errors == []
        assert b"".join(heard.audio) != first
        fixed.close()
    finally:
        pool.shutdown()
    plain_reading = requests.post(f"{cluster.url}/v1/text/preview", json={"text": "行长"}, timeout=10).json()
    assert [c["pinyin"] for c in plain_reading["segments"][0]["chars"]] == ["hang2", "zhang3"]


def test_an_unknown_voice_is_the_sdks_error_naming_what_voxq_has(cluster, url):
    synthesizer = SpeechSynthesizer(model="cosyvoice-v2", voice="longnobody", url=url)
    with pytest.raises(RequestFailure) as failed:
        synthesizer.call("你好。")
    assert failed.value.name == "InvalidParameter" and failed.value.http_code == 44
    assert failed.value.request_id == synthesizer.get_last_request_id()
    message = failed.value.message
    assert "longnobody" in message and "longxiaochun" in message and "VOXQ_DASHSCOPE_VOICES_FILE" in message
    assert all(name in message for name in voxq_voices(cluster)) and "surprised" in message


def test_sambert_call_returns_audio_and_timestamps(url):
    result = SambertSynthesizer.call(model="sambert-zhichu-v1", text=TWO, sample_rate=48000, format="wav",
                                     word_timestamp_enabled=True, base_address=url)
    response = result.get_response()
    assert response.status_code == 200 and response.usage["characters"] == len(TWO)
    with wave.open(io.BytesIO(result.get_audio_data())) as heard:
        assert heard.getframerate() == 48000
        seconds = len(heard.readframes(10**9)) / 2 / 48000
    # The sentences follow one another through the audio, and their words read the whole text.
    stamps = result.get_timestamps()
    assert stamps[0]["begin_time"] == 0 and stamps[-1]["end_time"] == pytest.approx(seconds * 1000, abs=5)
    assert all(a["end_time"] == b["begin_time"] for a, b in zip(stamps, stamps[1:]))
    words = [w for s in stamps for w in s["words"]]
    assert "".join(w["text"] for w in words) == "你好欢迎使用语音合成今天天气很好我们去公园散步吧"
    assert [w["begin_time"] for w in words] == sorted(w["begin_time"] for w in words)
    assert all(s["begin_time"] <= w["begin_time"] <= w["end_time"] <= s["end_time"] for s in stamps for w in s["words"])


def test_sambert_defaults_are_the_models_own(url):
    # Only the model and text: wav at the model's own rate (16 kHz for zhiying).
    result = SambertSynthesizer.call(model="sambert-zhiying-v1", text="好的。", base_address=url)
    assert result.get_response().status_code == 200
    with wave.open(io.BytesIO(result.get_audio_data())) as heard:
        assert heard.getframerate() == 16000
    assert len(result.get_timestamps()) == 1 and result.get_timestamps()[0]["words"] == []


def test_sambert_with_an_unknown_model_fails_as_the_sdk_reports_it(url):
    result = SambertSynthesizer.call(model="sambert-nobody-v1", text="你好。", base_address=url)
    response = result.get_response()
    assert response.status_code == 44 and response.code == "InvalidParameter"
    assert "sambert-nobody-v1" in response.message and "sambert-zhichu-v1" in response.message
    assert result.get_audio_data() is None


@pytest.fixture(scope="module")
def keyed(cluster, tmp_path_factory):
    """An API with keys and an operator's name table, beside the cluster (its Redis, its worker)."""
    workdir = tmp_path_factory.mktemp("keyed")
    names = workdir / "dashscope-voices.json"
    names.write_text(json.dumps({
        "cosyvoice": {"voices": {"house_voice": {"voice": None, "emotion": "happy", "speed": 1.5}, "longwan": None}},
        "sambert": {"sambert-house-v1": {"voice": None, "emotion": "sad", "sample_rate": 24000}},
    }))
    key = keys.new_key()
    api = Gunicorn(cluster.redis_url, cluster.data_dir, workdir, workers=1, VOXQ_API_KEYS=f"acme:{keys.hash_key(key)}",
                   VOXQ_DASHSCOPE_VOICES_FILE=names)
    api.wait_ready()
    yield api, key
    api.stop()


def test_a_bad_key_is_the_sdks_invalid_api_key(keyed, monkeypatch):
    api, _ = keyed
    url = api.url.replace("http", "ws", 1) + "/api-ws/v1/inference"
    monkeypatch.setattr(dashscope, "api_key", "vxq_not-a-key")
    with pytest.raises(RequestFailure) as failed:
        SpeechSynthesizer(model="cosyvoice-v1", voice="longxiaochun", url=url).call("你好。")
    assert failed.value.name == "InvalidApiKey"
    refused = SambertSynthesizer.call(model="sambert-zhichu-v1", text="你好。", base_address=url).get_response()
    assert (refused.status_code, refused.code) == (44, "InvalidApiKey")


def test_the_operators_table_adds_and_removes_names_and_the_options_map(keyed, monkeypatch):
    api, key = keyed
    url = api.url.replace("http", "ws", 1) + "/api-ws/v1/inference"
    monkeypatch.setattr(dashscope, "api_key", key)
    with pytest.raises(RequestFailure, match="longwan"):  # removed by the operator's file
        SpeechSynthesizer(model="cosyvoice-v1", voice="longwan", url=url).call("你好。")

    synthesizer = SpeechSynthesizer(model="cosyvoice-v1", voice="house_voice",
                                    format=AudioFormat.PCM_16000HZ_MONO_16BIT, volume=25, speech_rate=1.2, pitch_rate=0.8, url=url)
    assert len(synthesizer.call("你好。")) > 16000 * 2 * 0.2
    session_id = synthesizer.get_response()["header"]["attributes"]["voxq_session_id"]
    session = requests.get(f"{api.url}/v1/jobs/{session_id}", headers={"Authorization": f"Bearer {key}"},
                           timeout=10).json()
    assert session["status"] == "succeeded"
    options = session["options"]
    assert (options["emotion"], options["volume"], options["pitch"]) == ("happy", 0.5, 0.8)
    assert options["speed"] == pytest.approx(1.8)  # the caller's 1.2, times the table's 1.5
    assert (options["format"], options["sample_rate"]) == ("pcm", 16000)
    # A Sambert model the operator added speaks at the rate the table gives it.
    result = SambertSynthesizer.call(model="sambert-house-v1", text="好的。", base_address=url)
    assert result.get_response().status_code == 200
    with wave.open(io.BytesIO(result.get_audio_data())) as heard:
        assert heard.getframerate() == 24000
