"""POST /v1/audio/speech through the official openai SDK, against the API under gunicorn and a
real worker: the audio in wav, mp3 and pcm, the voice and instruction mapping, and the SDK's own
error classes for what voxq refuses."""
from __future__ import annotations

import io

import numpy as np
import openai
import pytest
import requests
import soundfile as sf

from api.openai_speech import emotion_from_instructions

TEXT = "你好，欢迎使用语音合成服务。"


@pytest.fixture(scope="module")
def sdk(cluster):
    # No keys are configured, so any key is accepted; retries off so an error is seen at once.
    return openai.OpenAI(base_url=f"{cluster.url}/v1", api_key="sk-unused", max_retries=0, timeout=60)


def speech(sdk, **kwargs):
    kwargs.setdefault("model", "tts-1")
    kwargs.setdefault("voice", "alloy")
    kwargs.setdefault("input", TEXT)
    return sdk.audio.speech.create(**kwargs)


def job_of(cluster, response) -> dict:
    job_id = response.response.headers["X-Voxq-Job-Id"]
    return requests.get(f"{cluster.url}/v1/jobs/{job_id}", timeout=10).json()


def test_wav_mp3_and_pcm_carry_the_same_speech(sdk, cluster, sample_rate):
    wav = speech(sdk, voice="echo", response_format="wav")
    assert wav.response.headers["Content-Type"] == "audio/wav"
    samples, rate = sf.read(io.BytesIO(wav.read()), dtype="int16")
    assert rate == sample_rate and len(samples) / rate > 1.5
    assert np.abs(samples).max() > 1000  # speech, not silence

    mp3 = speech(sdk, voice="echo", response_format="mp3")
    assert mp3.response.headers["Content-Type"] == "audio/mpeg"
    decoded, mp3_rate = sf.read(io.BytesIO(mp3.read()))
    assert mp3_rate == sample_rate
    assert abs(len(decoded) - len(samples)) < 0.1 * rate  # the same utterance, give or take codec padding

    pcm = speech(sdk, voice="echo", response_format="pcm")
    assert pcm.response.headers["Content-Type"] == "audio/pcm"
    raw = np.frombuffer(pcm.read(), dtype="<i2")  # raw 24 kHz 16-bit little-endian, no header
    assert np.array_equal(raw, samples)

    job = job_of(cluster, pcm)
    assert job["priority"] == "interactive"
    assert job["options"]["sample_rate"] == sample_rate and job["options"]["emotion"] == "calm"  # echo is calm
    assert job["metadata"] == {"via": "/v1/audio/speech", "model": "tts-1", "voice": "echo"}


def test_aac_comes_as_adts_that_a_second_decoder_reads(sdk, cluster, sample_rate):
    import av  # FFmpeg's decoder, a second one beside the encoder's own; Chromium's is in test_web

    aac = speech(sdk, voice="nova", response_format="aac")
    assert aac.response.headers["Content-Type"] == "audio/aac"
    body = aac.read()
    assert body[:2] == b"\xff\xf1"  # an ADTS sync word: MPEG-4, no CRC
    job = cluster.wait(aac.response.headers["X-Voxq-Job-Id"])  # streamed: the file is assembled after
    with av.open(io.BytesIO(body), format="aac") as container:
        stream = container.streams.audio[0]
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(stream)])
        assert stream.codec_context.sample_rate == sample_rate
    assert abs(len(audio) / sample_rate - job["result"]["duration_s"]) < 0.2  # give or take priming and chunk seams
    assert np.abs(audio).max() > 0.05


def test_instructions_choose_the_emotion_and_speed_is_honoured(sdk, cluster):
    happy = speech(sdk, model="gpt-4o-mini-tts", instructions="Speak in a cheerful, upbeat tone.",
                   response_format="flac")
    assert happy.response.headers["Content-Type"] == "audio/flac"
    assert job_of(cluster, happy)["options"]["emotion"] == "happy"
    sad = speech(sdk, model="fastspeech2-litert", voice="baker", instructions="用悲伤的语气朗读", response_format="wav")
    assert job_of(cluster, sad)["options"]["emotion"] == "sad"

    normal = job_of(cluster, speech(sdk, voice="alloy", response_format="wav"))
    fast = job_of(cluster, speech(sdk, voice="alloy", response_format="wav", speed=1.5))
    assert fast["result"]["duration_s"] < 0.8 * normal["result"]["duration_s"]


@pytest.mark.parametrize("kwargs,error_class,status,param,code", [
    ({"voice": "marvin"}, openai.BadRequestError, 400, "voice", "invalid_voice"),
    ({"model": "tts-9000"}, openai.NotFoundError, 404, "model", "model_not_found"),
    ({"input": "   "}, openai.BadRequestError, 400, "input", "empty_input"),
    ({"input": "好" * 4097}, openai.BadRequestError, 400, "input", "invalid_request"),
    ({"speed": 3.0}, openai.BadRequestError, 400, "speed", "invalid_request"),
    ({"input": "🙂🙂🙂"}, openai.BadRequestError, 400, "input", "nothing_to_say"),
], ids=["unknown-voice", "unknown-model", "empty", "too-long", "speed", "nothing-to-say"])
def test_errors_are_openai_shaped_and_raise_the_sdk_classes(sdk, kwargs, error_class, status, param, code):
    with pytest.raises(error_class) as caught:
        speech(sdk, **kwargs)
    error = caught.value
    assert error.status_code == status
    body = error.response.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    assert body["type"] == "invalid_request_error" and body["param"] == param and body["code"] == code
    assert body["message"]


def test_non_json_body_is_an_openai_error(cluster):
    response = requests.post(f"{cluster.url}/v1/audio/speech", data="input=hi", timeout=10,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_a_job_past_the_timeout_is_a_504_and_is_canceled(cluster):
    from api.app import create_app

    # Database 1 of the same server: a queue no worker consumes, so the job never starts.
    app = create_app({"TESTING": True,
                      "VOXQ_SETTINGS": {"redis_url": cluster.redis_url[:-1] + "1", "data_dir": cluster.data_dir,
                                        "limits": {"speech_timeout_s": 0.3}}})
    client = app.test_client()
    response = client.post("/v1/audio/speech", json={"model": "tts-1", "voice": "nova", "input": "你好。"})
    assert response.status_code == 504
    error = response.get_json()["error"]
    assert error["type"] == "server_error" and error["code"] == "timeout" and "0.3 s" in error["message"]
    jobs = client.get("/v1/jobs").get_json()["jobs"]
    assert [j["status"] for j in jobs] == ["canceled"]


@pytest.mark.parametrize("instructions,emotion", [
    ("Please sound happy!", "happy"),
    ("开心一点", "happy"),
    ("A calm, soothing voice", "calm"),
    ("angrily, like a furious chef", "angry"),
    ("惊讶地说", "surprised"),
    ("sad but then happy", "sad"),  # the earliest word wins
    ("Read it like a newscaster", None),
    ("on a crusade", None),  # English words count only at a word start
    (None, None),
])
def test_instruction_words(instructions, emotion):
    assert emotion_from_instructions(instructions) == emotion


def test_with_keys_configured_the_sdk_key_is_checked(cluster, tmp_path, sample_rate):
    import hashlib

    from tests.support import Gunicorn

    key = "vxq_openai-test-key"
    keyed = Gunicorn(cluster.redis_url, cluster.data_dir, tmp_path, workers=1,
                     VOXQ_API_KEYS=f"sdk:{hashlib.sha256(key.encode()).hexdigest()}")
    try:
        keyed.wait_ready()
        wrong = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="vxq_wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as caught:
            wrong.audio.speech.create(model="tts-1", voice="alloy", input="你好。")
        assert caught.value.response.json()["error"]["type"] == "invalid_request_error"
        right = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key=key, max_retries=0)
        audio = right.audio.speech.create(model="tts-1", voice="alloy", input="你好。", response_format="wav")
        assert sf.info(io.BytesIO(audio.read())).samplerate == sample_rate
    finally:
        keyed.stop()
