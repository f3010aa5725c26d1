"""The first audio as it is made: the engine yields pieces, the first chunk's pieces reach a stream
through Redis before the chunk's file lands, every listener gets the same bytes from the start,
and the hops of the first audio are timed in the job's record."""
from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
import requests
import soundfile as sf

from shared import plan
from shared.chunk_files import PCM, ChunkFiles
from shared.jobs import HOPS
from shared.options import SynthesisOptions
from shared.storage import Storage
from worker.engines.base import SynthesisConfig
from worker.pipeline import Pipeline

pytestmark = pytest.mark.live_cluster(worker_concurrency=2)

# A first sentence with no clause mark in its first 60 characters: one long first segment, so the
# first chunk takes long enough to speak that its first piece clearly comes before its file.
LONG_FIRST = ("尊敬的客户您好我们已经收到您的订单并且正在为您安排最近的仓库尽快发货预计明天下午就能送达请保持电话畅通以便快递员联系您"
              "。感谢您的耐心等待，祝您生活愉快。") + "今天的天气非常好，我们一起去公园散步吧。" * 6


def test_an_engine_in_pieces_is_the_engine_whole(engine):
    text = "随着人工智能技术的快速发展越来越多的企业开始在客户服务中使用智能语音助手"
    for config in (SynthesisConfig(), SynthesisConfig(speed=1.3)):
        whole = engine.synthesize(text, config)
        pieces = list(engine.synthesize_pieces(text, config))
        assert len(pieces) >= 3
        assert len(pieces[0].samples) < len(whole.samples) / 4  # the first piece is small: it comes early
        assert np.array_equal(np.concatenate([p.samples for p in pieces]), whole.samples)
        assert pieces[0].marks == whole.marks and not any(p.marks for p in pieces[1:])


class Recorder:
    def __init__(self):
        self.started, self.data, self.ended = [], [], 0

    def start(self, rate, head):
        self.started.append((rate, head))

    def add(self, data):
        self.data.append(data)

    def end(self):
        self.ended += 1


@pytest.mark.parametrize("fmt,rate,loudness", [("wav", None, "off"), ("pcm", 16000, None), ("mulaw", None, "off")])
def test_a_chunk_spoken_in_pieces_sends_its_files_bytes(engine, settings, tmp_path, fmt, rate, loudness):
    options = SynthesisOptions(format=fmt, sample_rate=rate, loudness=loudness, marks=True)
    pipeline = Pipeline(engine, settings)
    chunk = plan.chunks(plan.segments(LONG_FIRST[:80], settings), options, settings)[0]
    live, plain = (ChunkFiles(Storage(tmp_path / name), "ab" * 16, fmt) for name in ("live", "plain"))
    recorder = Recorder()
    pipeline.speak(live, chunk, 0, 2, options, live=recorder)
    pipeline.speak(plain, chunk, 0, 2, options)
    assert recorder.ended == 1 and len(recorder.data) >= 3
    assert recorder.started[0][0] == (options.sample_rate or engine.sample_rate)
    sent = b"".join(recorder.data)
    assert sent == live.piece(0).read_bytes()  # the stream's bytes are the chunk's file
    if fmt == "mulaw":
        assert recorder.started[0][1] == live.header() and len(sent) == live.path(0, PCM).stat().st_size // 2
    if loudness == "off":  # no gain to set in advance: spoken in pieces or whole, the same chunk
        assert live.path(0, PCM).read_bytes() == plain.path(0, PCM).read_bytes()
        assert live.path(0, "json").read_text() == plain.path(0, "json").read_text()


def _job(cluster, job_id: str, **params) -> dict:
    return requests.get(f"{cluster.url}/v1/jobs/{job_id}", params=params, timeout=10).json()


@pytest.mark.slow
def test_the_first_piece_reaches_a_stream_before_the_first_chunk_lands(cluster):
    job_id = cluster.submit(text=LONG_FIRST, format="wav", loudness="off")["id"]
    files = ChunkFiles(Storage(cluster.data_dir), job_id, "wav")
    landed_at_first_byte = []
    body = bytearray()
    with requests.get(f"{cluster.url}/v1/jobs/{job_id}/stream", stream=True, timeout=60) as response:
        assert response.status_code == 200
        for block in response.iter_content(chunk_size=None):
            if len(body) > 44 and not landed_at_first_byte:  # past the header: the first audio
                landed_at_first_byte.append(files.landed(0))
            body += block
    assert landed_at_first_byte == [False]
    done = cluster.wait(job_id)
    assert done["status"] == "succeeded"
    streamed, rate = sf.read(io.BytesIO(bytes(body)), dtype="int16")
    final, _ = sf.read(io.BytesIO(requests.get(f"{cluster.url}/v1/jobs/{job_id}/audio", timeout=30).content),
                       dtype="int16")
    assert np.array_equal(streamed, final)  # pieces, then chunks: exactly the file
    timings = _job(cluster, job_id, timings=1)["timings"]
    assert list(timings) == [hop for hop in HOPS if hop in timings] and set(timings) == set(HOPS)
    assert [timings[h] for h in HOPS[2:]] == sorted(timings[h] for h in HOPS[2:])  # each hop after the last
    assert "timings" not in _job(cluster, job_id) or _job(cluster, job_id)["timings"] is None


@pytest.mark.slow
def test_listeners_early_and_late_get_the_same_bytes_from_the_start(cluster):
    # Loudness on (the default): the first chunk goes out at a gain set before it is spoken, and
    # every listener, whenever it connects, gets the same bytes.
    job_id = cluster.submit(text=LONG_FIRST, format="pcm")["id"]
    bodies = {}

    def listen(name):
        with requests.get(f"{cluster.url}/v1/jobs/{job_id}/stream", stream=True, timeout=60) as response:
            bodies[name] = b"".join(response.iter_content(chunk_size=None))

    early = threading.Thread(target=listen, args=("early",))
    early.start()
    deadline = time.time() + 30
    while _job(cluster, job_id)["progress"]["chunks_done"] < 1:  # the first chunk has landed
        assert time.time() < deadline
        time.sleep(0.02)
    listen("late")
    early.join(60)
    assert cluster.wait(job_id)["status"] == "succeeded"
    listen("after")
    assert len(bodies["early"]) == len(bodies["late"]) > 24000 * 2 * 10
    if bodies["early"] != bodies["late"]:
        # A listener still reading when the job succeeded goes on from the finished file, whose
        # gain is the whole job's (the chunk files go): the same samples at a gain a fraction of a
        # dB away, never a sample skipped or sent twice (that would differ by far more).
        early, late = (np.frombuffer(bodies[name], dtype=np.int16).astype(float) for name in ("early", "late"))
        assert np.all(np.abs(early - late) <= 0.1 * np.abs(early) + 2), np.abs(early - late).max()
    # After the end the stream is the finished file, whose chunks are at the job's one gain.
    assert len(bodies["after"]) == len(bodies["early"])


@pytest.mark.slow
def test_cancel_during_the_first_chunk_ends_the_stream(cluster):
    job_id = cluster.submit(text=LONG_FIRST * 3, format="pcm")["id"]
    with requests.get(f"{cluster.url}/v1/jobs/{job_id}/stream", stream=True, timeout=60) as response:
        blocks = response.iter_content(chunk_size=None)
        next(blocks)  # the first audio is out
        assert requests.delete(f"{cluster.url}/v1/jobs/{job_id}", timeout=10).status_code == 202
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            for _ in blocks:
                pass
    assert _job(cluster, job_id)["status"] == "canceled"
    deadline = time.time() + 30
    while list(cluster.data_dir.rglob(f"{job_id}.c*")):  # what landed after the cancel goes too
        assert time.time() < deadline
        time.sleep(0.05)
