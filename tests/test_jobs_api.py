"""The jobs API for real: Flask app → private Redis → a real Celery worker process → shared storage."""
from __future__ import annotations

import base64
import io
import time

import pytest
import soundfile as sf

from tests.support import quiet, wait_for, wait_until


def submit(client, **body):
    body.setdefault("text", "你好。欢迎使用语音合成服务。")
    return client.post("/v1/jobs", json=body)


def test_submit_poll_download(client, worker, sample_rate):
    response = submit(client, marks=True, metadata={"order": 42})
    assert response.status_code == 202
    accepted = response.get_json()
    assert accepted["status"] == "queued"
    assert response.headers["Location"] == f"/v1/jobs/{accepted['id']}"
    job = wait_for(client, accepted["id"])
    assert job["status"] == "succeeded", job
    assert job["metadata"] == {"order": 42}
    assert job["progress"]["segments_done"] == job["progress"]["segments_total"] == 2
    result = job["result"]
    audio = client.get(result["audio_url"])
    assert audio.status_code == 200
    assert audio.headers["Content-Type"] == "audio/wav"
    assert int(audio.headers["Content-Length"]) == result["bytes"] == len(audio.data)
    assert audio.headers["ETag"].strip('"') == result["sha256"]
    samples, rate = sf.read(io.BytesIO(audio.data))
    assert rate == sample_rate and len(samples) / rate == pytest.approx(result["duration_s"], abs=0.01)
    marks = client.get(result["marks_url"]).get_json()
    assert [m["value"] for m in marks if m["type"] == "char"] == list("你好欢迎使用语音合成服务")

    ranged = client.get(result["audio_url"], headers={"Range": "bytes=100-199"})
    assert ranged.status_code == 206
    assert ranged.data == audio.data[100:200]
    assert ranged.headers["Content-Range"] == f"bytes 100-199/{result['bytes']}"
    cached = client.get(result["audio_url"], headers={"If-None-Match": audio.headers["ETag"]})
    assert cached.status_code == 304

    encoded = client.get(result["audio_url"] + "?encoding=base64").get_json()
    assert base64.b64decode(encoded["audio_base64"]) == audio.data


def test_identical_request_is_served_from_cache(client, worker):
    first = wait_for(client, submit(client, text="缓存测试。", format="mp3").get_json()["id"])
    second = wait_for(client, submit(client, text="缓存测试。", format="mp3").get_json()["id"])
    other = wait_for(client, submit(client, text="缓存测试。", format="mp3", speed=1.2).get_json()["id"])
    assert not first["cache_hit"] and second["cache_hit"] and not other["cache_hit"]
    assert second["result"]["sha256"] == first["result"]["sha256"]
    assert other["result"]["sha256"] != first["result"]["sha256"]
    # Each job owns its file: deleting the first leaves the cached copy playable.
    assert client.delete(f"/v1/jobs/{first['id']}").status_code == 204
    assert client.get(second["result"]["audio_url"]).status_code == 200


def test_idempotency_key(client, worker):
    headers = {"Idempotency-Key": "order-7"}
    first = client.post("/v1/jobs", json={"text": "幂等。"}, headers=headers)
    again = client.post("/v1/jobs", json={"text": "幂等。"}, headers=headers)
    assert first.status_code == 202 and again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]
    conflict = client.post("/v1/jobs", json={"text": "不同。"}, headers=headers)
    assert conflict.status_code == 409
    assert conflict.get_json()["error"]["code"] == "idempotency_conflict"


def test_audio_is_409_until_done_and_cancel_of_queued_job(client, redis_url):
    # No worker runs in this test, so the job stays queued.
    job = submit(client).get_json()
    pending = client.get(f"/v1/jobs/{job['id']}/audio")
    assert pending.status_code == 409 and pending.get_json()["error"]["code"] == "not_ready"
    canceled = client.delete(f"/v1/jobs/{job['id']}")
    assert canceled.status_code == 202 and canceled.get_json()["status"] == "canceled"
    assert client.get(f"/v1/jobs/{job['id']}").get_json()["status"] == "canceled"


def test_cancel_running_job_stops_at_segment_boundary(client, worker):
    text = "这是一个很长的句子，用来测试取消。" * 40
    job = submit(client, text=text, priority="batch").get_json()
    deadline = time.time() + 60
    while time.time() < deadline:
        body = client.get(f"/v1/jobs/{job['id']}").get_json()
        if body["status"] == "running" and body["progress"]["segments_done"] >= 1:
            break
        time.sleep(0.05)
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 202
    wait_until(lambda: quiet(worker.redis_url), 30, what="the worker to stop on the canceled job")
    final = client.get(f"/v1/jobs/{job['id']}").get_json()
    assert final["status"] == "canceled"
    assert final["progress"]["segments_done"] < final["progress"]["segments_total"]
    assert final["result"] is None


def test_list_is_paginated_newest_first(client, redis_url):
    ids = [submit(client, text=f"第{i}条。").get_json()["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        query = "/v1/jobs?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(query).get_json()
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids[::-1]
    assert client.get("/v1/jobs?status=succeeded").get_json()["jobs"] == []
    assert len(client.get("/v1/jobs?status=queued").get_json()["jobs"]) == 5


def test_voices_come_from_the_workers(client, worker):
    engines = client.get("/v1/voices").get_json()["engines"]
    assert [e["engine"] for e in engines] == ["fastspeech2-litert"]
    assert engines[0]["voices"][0]["name"] == "baker"
    assert "happy" in engines[0]["emotions"] and "opus" in engines[0]["formats"]


def test_health_and_readiness(client, redis_url, worker):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").get_json()["status"] == "ready"


def test_not_ready_without_workers(client, redis_url):
    response = client.get("/readyz")
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "no_workers"


BAD = [
    ({"json": {"text": ""}}, 422, "empty_text", "text"),
    ({"json": {"text": "   "}}, 422, "empty_text", "text"),
    ({"json": {}}, 422, "invalid_request", "text"),
    ({"json": {"text": "好" * 100_001}}, 413, "text_too_long", "text"),
    ({"json": {"text": "你好", "emotion": "joyful"}}, 422, "unknown_emotion", "emotion"),
    ({"json": {"text": "你好", "format": "aiff"}}, 422, "invalid_request", "format"),
    ({"json": {"text": "你好", "sample_rate": 11025}}, 422, "invalid_request", "sample_rate"),
    ({"json": {"text": "你好", "format": "opus", "sample_rate": 44100}}, 422, "unsupported_sample_rate", "sample_rate"),
    ({"json": {"text": "你好", "speed": 9}}, 422, "invalid_request", "speed"),
    ({"json": {"text": "你好", "priority": "urgent"}}, 422, "invalid_request", "priority"),
    ({"json": {"text": "你好", "colour": "red"}}, 422, "invalid_request", "colour"),
    ({"json": {"text": "你好", "metadata": {"k": "x" * 5000}}}, 422, "invalid_request", "metadata"),
    ({"data": "{not json", "content_type": "application/json"}, 400, "invalid_json", None),
    ({"json": ["a list"]}, 400, "invalid_json", None),
    ({"data": "text=你好", "content_type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type", None),
]


@pytest.mark.parametrize("kwargs,status,code,field", BAD, ids=[f"{b[2]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_gets_structured_error_and_nothing_is_queued(client, redis_url, kwargs, status, code, field):
    response = client.post("/v1/jobs", **kwargs)
    assert response.status_code == status
    assert response.is_json
    error = response.get_json()["error"]
    assert error["code"] == code and error["field"] == field and error["message"]
    assert client.get("/v1/jobs").get_json()["jobs"] == []


def test_unknown_ids_and_routes_are_json_404(client, redis_url):
    for path in ("/v1/jobs/0123456789abcdef0123456789abcdef", "/v1/jobs/../../etc/passwd",
                 "/v1/jobs/0123456789abcdef0123456789abcdef/audio", "/nope"):
        response = client.get(path)
        assert response.status_code == 404 and response.is_json, path
    assert client.delete("/v1/jobs/0123456789abcdef0123456789abcdef").status_code == 404
    assert client.put("/v1/jobs").get_json()["error"]["code"] == "method_not_allowed"


def test_oversized_body_is_413(client, redis_url):
    response = client.post("/v1/jobs", data="x" * (2 << 20), content_type="application/json")
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "payload_too_large"


def test_405_names_the_allowed_methods(client, redis_url):
    response = client.put("/v1/jobs")
    assert response.status_code == 405 and "POST" in response.headers["Allow"]


def test_unknown_audio_encoding_is_422(client, redis_url):
    job = submit(client).get_json()
    response = client.get(f"/v1/jobs/{job['id']}/audio?encoding=hex")
    assert response.status_code == 422 and response.get_json()["error"]["field"] == "encoding"
