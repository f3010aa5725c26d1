"""Streaming through the real API server (gunicorn, gevent workers) from real workers: audio as
chunks land, the same bytes as the finished file, late clients, failures a client can detect,
50 streams at once, and OpenAI's streaming speech (bytes and SSE) with the official SDK."""
from __future__ import annotations

import base64
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import soundfile as sf


LONG = "随着人工智能技术的快速发展，越来越多的企业开始使用智能语音助手。今天的天气非常好，我们一起去公园散步吧。" * 4

pytestmark = [pytest.mark.slow, pytest.mark.live_cluster(worker_concurrency=2)]


def job(cluster, job_id: str) -> dict:
    return requests.get(f"{cluster.url}/v1/jobs/{job_id}", timeout=10).json()


def read_stream(response, on_first=None) -> bytes:
    body = bytearray()
    for block in response.iter_content(chunk_size=None):
        if not body and on_first:
            on_first()
        body += block
    return bytes(body)


def finished_file(cluster, job_id: str) -> bytes:
    return requests.get(f"{cluster.url}/v1/jobs/{job_id}/audio", timeout=30).content


def test_wav_streams_as_chunks_land_and_equals_the_finished_file(cluster, sample_rate):
    # Loudness off: then the stream is the file, sample for sample (with it on, see test_loudness).
    job_id = cluster.submit(text=LONG, format="wav", loudness="off")["id"]
    status_at_first_byte = []
    with requests.get(f"{cluster.url}/v1/jobs/{job_id}/stream", stream=True, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "audio/wav"
        assert response.headers.get("Transfer-Encoding") == "chunked"
        body = read_stream(response, lambda: status_at_first_byte.append(job(cluster, job_id)["progress"]))
    progress = status_at_first_byte[0]
    assert progress["chunks_done"] < progress["chunks_total"]  # audio came before the job ended
    assert job(cluster, job_id)["status"] == "succeeded"
    streamed, rate = sf.read(io.BytesIO(body), dtype="int16")
    final, final_rate = sf.read(io.BytesIO(finished_file(cluster, job_id)), dtype="int16")
    assert rate == final_rate == sample_rate
    assert np.array_equal(streamed, final)  # the same samples, from the streaming header on


def test_pcm_and_a_late_client_get_everything_from_the_start(cluster):
    job_id = cluster.submit(text=LONG, format="pcm", sample_rate=16000, loudness="off")["id"]
    while job(cluster, job_id)["progress"]["chunks_done"] < 2:
        time.sleep(0.05)
    # Connects after two chunks landed: still gets the first bytes first.
    with requests.get(f"{cluster.url}/v1/jobs/{job_id}/stream", stream=True, timeout=60) as response:
        assert response.headers["Content-Type"] == "audio/L16; rate=16000; channels=1"
        body = read_stream(response)
    assert body == finished_file(cluster, job_id)
    # After the end, the stream is the finished file.
    again = requests.get(f"{cluster.url}/v1/jobs/{job_id}/stream", timeout=30)
    assert again.status_code == 200 and again.content == body


@pytest.mark.parametrize("fmt", ["mp3", "ogg", "opus", "aac"])
def test_compressed_streams_are_the_chunks_encoded_in_order(cluster, fmt, sample_rate):
    job_id = cluster.submit(text=LONG, format=fmt)["id"]
    with requests.get(f"{cluster.url}/v1/jobs/{job_id}/stream", stream=True, timeout=60) as response:
        assert response.status_code == 200
        body = read_stream(response)
    done = cluster.wait(job_id)  # the stream ends with the last piece; the file is assembled after it
    assert done["status"] == "succeeded"
    pieces = sorted((cluster.data_dir / "audio" / job_id[:2]).glob(f"{job_id}.c*.{fmt}"))
    assert len(pieces) == done["progress"]["chunks_total"] >= 3
    assert body == b"".join(p.read_bytes() for p in pieces)
    seconds = 0.0
    for piece in pieces:  # each piece is a whole stream a decoder reads on its own
        audio, rate = decode(piece, fmt)
        assert np.abs(audio).max() > 0.05
        seconds += len(audio) / rate
    assert seconds == pytest.approx(done["result"]["duration_s"], abs=0.2 * len(pieces))
    if fmt == "aac":  # ADTS frames laid end to end are one stream to a decoder too
        audio, rate = decode(io.BytesIO(body), fmt)
        assert rate == sample_rate and len(audio) / rate == pytest.approx(seconds, abs=0.01)


def decode(source, fmt):
    if fmt != "aac":
        return sf.read(source)
    import av  # the AAC decoder is FFmpeg's, through PyAV

    with av.open(source, format="aac") as container:
        stream = container.streams.audio[0]
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(stream)])
        return audio, stream.codec_context.sample_rate


@pytest.mark.parametrize("fmt,subtype", [("mulaw-raw", "ULAW"), ("alaw", "ALAW")])
def test_g711_streams_its_bytes_raw_or_after_a_wav_header(cluster, fmt, subtype):
    job_id = cluster.submit(text=LONG, format=fmt)["id"]
    with requests.get(f"{cluster.url}/v1/jobs/{job_id}/stream", stream=True, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == {"mulaw-raw": "audio/PCMU", "alaw": "audio/wav"}[fmt]
        body = read_stream(response)
    done = cluster.wait(job_id)
    assert done["status"] == "succeeded" and done["result"]["sample_rate"] == 8000
    pieces = sorted((cluster.data_dir / "audio" / job_id[:2]).glob(f"{job_id}.c*.{fmt.split('-')[0]}-raw"))
    assert len(pieces) == done["progress"]["chunks_total"] >= 3
    data = b"".join(p.read_bytes() for p in pieces)
    if fmt == "alaw":
        # The header the worker wrote, then the bytes: a WAV of unknown length, format code 6.
        assert body[:4] == b"RIFF" and int.from_bytes(body[20:22], "little") == 6
        assert body.endswith(data)
        audio, rate = sf.read(io.BytesIO(body))
        assert rate == 8000 and len(audio) == len(data)
    else:
        assert body == data
        audio, rate = sf.read(io.BytesIO(body), samplerate=8000, channels=1, format="RAW", subtype=subtype)
    # One byte a sample: the stream is as long as the file (each chunk at its own loudness estimate).
    assert abs(len(data) - done["result"]["duration_s"] * 8000) <= 5  # duration_s is rounded to the ms
    assert np.abs(audio).max() > 0.1


def test_m4a_cannot_stream_and_says_so(cluster):
    job_id = cluster.submit(text="你好。", format="m4a")["id"]
    response = requests.get(f"{cluster.url}/v1/jobs/{job_id}/stream", timeout=30)
    assert response.status_code == 409 and response.json()["error"]["code"] == "not_streamable"


def test_flac_cannot_stream_and_says_so(cluster):
    job_id = cluster.submit(text="你好。", format="flac")["id"]
    response = requests.get(f"{cluster.url}/v1/jobs/{job_id}/stream", timeout=30)
    assert response.status_code == 409 and response.json()["error"]["code"] == "not_streamable"


def test_a_job_canceled_mid_stream_ends_it_so_clients_can_tell(cluster):
    job_id = cluster.submit(text=LONG * 2, format="wav")["id"]
    with requests.get(f"{cluster.url}/v1/jobs/{job_id}/stream", stream=True, timeout=60) as response:
        blocks = response.iter_content(chunk_size=None)
        assert next(blocks)[:4] == b"RIFF"
        assert requests.delete(f"{cluster.url}/v1/jobs/{job_id}", timeout=10).status_code == 202
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            for _ in blocks:
                pass
    assert job(cluster, job_id)["status"] == "canceled"


def test_fifty_streams_at_once_and_clients_that_leave_cost_nothing(cluster):
    job_id = cluster.submit(text=LONG, format="pcm", loudness="off")["id"]

    def listen(_):
        with requests.get(f"{cluster.url}/v1/jobs/{job_id}/stream", stream=True, timeout=120) as response:
            return read_stream(response)

    # Ten clients that read one block and hang up, then fifty that listen to the end, while the
    # API still answers everything else at once.
    for _ in range(10):
        with requests.get(f"{cluster.url}/v1/jobs/{job_id}/stream", stream=True, timeout=60) as response:
            next(response.iter_content(chunk_size=None))
    with ThreadPoolExecutor(50) as pool:
        listening = [pool.submit(listen, i) for i in range(50)]
        started = time.perf_counter()
        assert requests.get(f"{cluster.url}/healthz", timeout=5).status_code == 200
        assert time.perf_counter() - started < 2
        bodies = [f.result(timeout=180) for f in listening]
    assert len(set(bodies)) == 1 and bodies[0] == finished_file(cluster, job_id)


def test_openai_sdk_streams_speech_bytes_and_events(cluster):
    openai = pytest.importorskip("openai")
    sdk = openai.OpenAI(base_url=f"{cluster.url}/v1", api_key="unused", max_retries=0)
    first_at = []
    started = time.perf_counter()
    with sdk.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy", input=LONG,
                                                         response_format="pcm",
                                                         extra_body={"loudness": "off"}) as response:
        job_id = response.headers["X-Voxq-Job-Id"]
        body = bytearray()
        for block in response.iter_bytes():
            if not body:
                first_at.append(time.perf_counter() - started)
                first_progress = job(cluster, job_id)["progress"]
            body += block
    assert first_progress["chunks_done"] < first_progress["chunks_total"]
    assert job(cluster, job_id)["status"] == "succeeded"
    assert bytes(body) == finished_file(cluster, job_id)

    # SSE: speech.audio.delta events in order, then speech.audio.done.
    events = []
    with requests.post(f"{cluster.url}/v1/audio/speech", stream=True, timeout=60,
                       json={"model": "tts-1", "voice": "alloy", "input": LONG, "response_format": "pcm",
                             "stream_format": "sse", "loudness": "off"}) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
    assert [e["type"] for e in events[-1:]] == ["speech.audio.done"]
    assert {e["type"] for e in events[:-1]} == {"speech.audio.delta"} and len(events) > 2
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert audio == bytes(body)  # the same text and voice: the same speech (served from the cache or not)
    assert events[-1]["usage"]["output_tokens"] == len(audio)
