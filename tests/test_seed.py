"""POST /tts, the original service's endpoint, against the API under gunicorn and a real worker:
form fields in, {"status", "audio_url"} or {"status", "message"} out."""
from __future__ import annotations

import io
import time

import pytest
import requests
import soundfile as sf



def tts(cluster, **kwargs):
    return requests.post(f"{cluster.url}/tts", timeout=60, **kwargs)


def test_success_gives_the_jobs_audio_url(cluster, sample_rate):
    response = tts(cluster, data={"text": "今天天气很好。", "emotion": "happy"})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success" and set(body) == {"status", "audio_url"}
    job_id = body["audio_url"].split("/")[3]
    assert body["audio_url"] == f"/v1/jobs/{job_id}/audio"

    audio = requests.get(cluster.url + body["audio_url"], timeout=10)
    assert audio.status_code == 200 and audio.headers["Content-Type"] == "audio/wav"
    samples, rate = sf.read(io.BytesIO(audio.content))
    assert rate == sample_rate and len(samples) / rate > 1.0

    job = requests.get(f"{cluster.url}/v1/jobs/{job_id}", timeout=10).json()
    assert job["status"] == "succeeded" and job["options"]["emotion"] == "happy"
    assert job["priority"] == "interactive" and job["metadata"] == {"via": "/tts"}


def test_multipart_form_and_default_emotion(cluster):
    response = tts(cluster, files={"text": (None, "你好。")})
    assert response.status_code == 200 and response.json()["status"] == "success"
    job_id = response.json()["audio_url"].split("/")[3]
    assert requests.get(f"{cluster.url}/v1/jobs/{job_id}", timeout=10).json()["options"]["emotion"] == "neutral"


@pytest.mark.parametrize("kwargs,status,words", [
    ({"data": {"text": ""}}, 422, "empty"),
    ({"data": {"text": "   "}}, 422, "empty"),
    ({"data": {"emotion": "happy"}}, 422, "'text' is required"),
    ({"data": {"text": "你好", "emotion": "joyful"}}, 422, "unknown emotion"),
    ({"data": {"text": "🙂🙂"}}, 422, "nothing to say"),
    ({"data": {"text": "好" * 100_001}}, 413, "limit is 100000"),
    ({"json": {"text": "你好"}}, 415, "form"),
], ids=["empty", "blank", "missing", "emotion", "nothing-to-say", "too-long", "json"])
def test_failure_is_status_error_with_a_message(cluster, kwargs, status, words):
    response = tts(cluster, **kwargs)
    assert response.status_code == status
    body = response.json()
    assert body["status"] == "error" and set(body) == {"status", "message"}
    assert words in body["message"]


def test_timeout_is_a_504_error_and_the_job_is_canceled(cluster):
    from api.app import create_app

    # Database 1 of the same server: a queue no worker consumes, so the job never starts.
    app = create_app({"TESTING": True,
                      "VOXQ_SETTINGS": {"redis_url": cluster.redis_url[:-1] + "1", "data_dir": cluster.data_dir,
                                        "limits": {"speech_timeout_s": 0.3}}})
    client = app.test_client()
    response = client.post("/tts", data={"text": "你好。"})
    assert response.status_code == 504
    assert response.get_json() == {"status": "error",
                                   "message": "the audio was not ready within 0.3 s; the job was canceled"}
    assert [j["status"] for j in client.get("/v1/jobs").get_json()["jobs"]] == ["canceled"]


def test_a_job_canceled_while_waiting_is_a_409(cluster):
    from concurrent.futures import ThreadPoolExecutor

    from api.app import create_app

    app = create_app({"TESTING": True,
                      "VOXQ_SETTINGS": {"redis_url": cluster.redis_url[:-1] + "2", "data_dir": cluster.data_dir,
                                        "limits": {"speech_timeout_s": 20}}})
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(lambda: app.test_client().post("/tts", data={"text": "你好。"}))
        client = app.test_client()
        deadline = time.time() + 10
        while not (jobs := client.get("/v1/jobs").get_json()["jobs"]) and time.time() < deadline:
            time.sleep(0.05)
        assert client.delete(f"/v1/jobs/{jobs[0]['id']}").status_code == 202
        response = waiting.result(timeout=20)
    assert response.status_code == 409
    assert response.get_json() == {"status": "error", "message": "the job was canceled before it finished"}
