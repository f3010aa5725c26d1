"""Hostile requests against the real API under gunicorn: every one gets a structured 4xx in the
shape of the face it called, never a 5xx, an HTML page or a job made of half a body."""
from __future__ import annotations

import json
import socket

import pytest
import redis

from shared.store import keyspace

VOXQ, OPENAI, SEED = "voxq", "openai", "seed"


def raw(cluster, request: bytes, shut_write: bool = False) -> tuple[int, dict, bytes]:
    """Send bytes as they are (no client library would send these) and read the answer."""
    with socket.create_connection(("127.0.0.1", cluster.api.port), timeout=10) as sock:
        sock.sendall(request)
        if shut_write:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            try:
                part = sock.recv(65536)
            except ConnectionResetError:
                break
            if not part:
                break
            data += part
            head, sep, body = data.partition(b"\r\n\r\n")
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
            if sep and length and len(body) >= length[0]:
                break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def assert_shaped(status: int, headers: dict, body: bytes, face: str, expected: int = 400) -> dict:
    assert status == expected, (status, body[:300])
    assert headers.get("content-type", "").startswith("application/json"), (headers, body[:300])
    doc = json.loads(body)
    if face == SEED:
        assert doc["status"] == "error" and doc["message"]
    elif face == OPENAI:
        assert doc["error"]["type"] == "invalid_request_error" and doc["error"]["message"]
    else:
        assert doc["error"]["code"] and doc["error"]["message"]
    return doc


def post(path: str, body: bytes, content_type: str = "application/json", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n").encode() + body


FACES = [("/v1/jobs", VOXQ), ("/v1/audio/speech", OPENAI), ("/v1/text/preview", VOXQ)]


@pytest.mark.parametrize("path,face", FACES)
def test_json_nested_a_thousand_levels_deep(cluster, path, face):
    body = b"[" * 1000 + b"]" * 1000
    assert_shaped(*raw(cluster, post(path, body)), face)
    body = b'{"text": "\xe4\xbd\xa0\xe5\xa5\xbd", "input": "x", "a": ' + b'{"b": ' * 5000 + b"1" + b"}" * 5001
    assert_shaped(*raw(cluster, post(path, body)), face)


@pytest.mark.parametrize("depth", [500, 700, 950])
def test_metadata_nested_hundreds_of_levels(cluster, depth):
    metadata = "{" + '"a": {' * depth + "}" * depth + "}"
    body = f'{{"text": "你好。", "metadata": {metadata}}}'.encode()
    doc = assert_shaped(*raw(cluster, post("/v1/jobs", body)), VOXQ)
    assert doc["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("path,face,field", [("/v1/jobs", VOXQ, "text"), ("/v1/audio/speech", OPENAI, "input"),
                                             ("/v1/text/preview", VOXQ, "text")])
def test_a_lone_surrogate_in_text(cluster, path, face, field):
    body = ('{"%s": "你好\\ud800。", "model": "tts-1", "voice": "alloy"}' % field).encode()
    assert_shaped(*raw(cluster, post(path, body)), face)


@pytest.mark.parametrize("path,face", FACES + [("/tts", SEED)])
def test_a_malformed_chunked_body(cluster, path, face):
    request = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n").encode()
    assert_shaped(*raw(cluster, request), face)


@pytest.mark.parametrize("path,face", FACES + [("/tts", SEED)])
def test_content_length_that_is_no_number(cluster, path, face):
    request = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: abc\r\n\r\n{{}}"
    assert_shaped(*raw(cluster, request.encode()), face)


def test_a_nul_byte_in_the_path(cluster):
    # gunicorn refuses the request line before it knows a path: voxq's own shape.
    assert_shaped(*raw(cluster, b"GET /v1/jobs/\x00abc HTTP/1.1\r\nHost: x\r\n\r\n"), VOXQ)
    assert_shaped(*raw(cluster, b"GET /v1/jobs/%00abc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), VOXQ,
                  expected=404)


@pytest.mark.parametrize("form", [b"text=%zz", b"text=%E4%BD", b"text=ok%", b"text=%G0ab&emotion=happy"])
def test_tts_refuses_invalid_percent_escapes(cluster, form):
    doc = assert_shaped(*raw(cluster, post("/tts", form, "application/x-www-form-urlencoded")), SEED)
    assert "percent" in doc["message"] or "UTF-8" in doc["message"]


def jobs_stored(cluster) -> int:
    client = redis.Redis.from_url(cluster.redis_url)
    return sum(1 for _ in client.scan_iter(keyspace.job("*")))


@pytest.mark.parametrize("path,face,content_type,body", [
    ("/tts", SEED, "application/x-www-form-urlencoded", "text=你好，这是一段被截断的".encode()),
    ("/v1/jobs", VOXQ, "application/json", '{"text": "你好，这是一段被截断的"}'.encode()),
])
def test_a_truncated_body_is_never_synthesized(cluster, path, face, content_type, body):
    before = jobs_stored(cluster)
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body) + 40}\r\n\r\n").encode()
    status, headers, answer = raw(cluster, head + body, shut_write=True)
    doc = assert_shaped(status, headers, answer, face)
    assert "ended after" in json.dumps(doc, ensure_ascii=False)
    assert jobs_stored(cluster) == before


def test_sound_requests_still_work(cluster):
    job = cluster.submit(text="你好，世界。", metadata={"a": {"b": {"c": [1, 2, {"d": "深"}]}}})
    assert cluster.wait(job["id"])["status"] == "succeeded"
    status, headers, body = raw(cluster, post("/tts", "text=%E4%BD%A0%E5%A5%BD".encode(), "application/x-www-form-urlencoded"))
    assert status == 200, body
    chunked = (b"POST /v1/text/preview HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
               b"10\r\n{\"text\": \"12345\"\r\n1\r\n}\r\n0\r\n\r\n")
    status, _, body = raw(cluster, chunked)
    assert status == 200, body
    assert json.loads(body)["normalized"] == "一万二千三百四十五"
