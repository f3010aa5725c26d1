"""Loudness through real workers: five jobs of different emotions and volumes, each of several
chunks, come out at the target (measured over the whole job), never over the true-peak ceiling;
the telephone's hotter default; what a stream's chunks carry; bad targets and rates are 422s."""
from __future__ import annotations

import io

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from shared.options import FILE_LOUDNESS_LUFS, TELEPHONE_LOUDNESS_LUFS, TRUE_PEAK_CEILING_DBTP
from tests.support import wait_for

pytestmark = pytest.mark.slow

TEXT = "随着人工智能技术的快速发展，越来越多的企业开始使用智能语音助手。今天的天气非常好，我们一起去公园散步吧。" * 2
CEILING = 10 ** (TRUE_PEAK_CEILING_DBTP / 20)


def finished(client, body: dict) -> tuple[dict, bytes]:
    accepted = client.post("/v1/jobs", json={"text": TEXT, **body})
    assert accepted.status_code == 202, accepted.get_json()
    job = wait_for(client, accepted.get_json()["id"])
    assert job["status"] == "succeeded", job
    return job, client.get(f"/v1/jobs/{job['id']}/audio").data


def test_five_jobs_of_different_emotions_and_volumes_meet_the_target(client, worker, data_dir):
    cases = [("neutral", 1.0), ("happy", 1.5), ("sad", 0.6), ("angry", 2.0), ("calm", 0.3)]
    levels = []
    for emotion, volume in cases:
        job, data = finished(client, {"emotion": emotion, "volume": volume})
        assert job["progress"]["chunks_total"] >= 2  # the gain is one over the whole job, across chunks
        audio, rate = sf.read(io.BytesIO(data))
        level = pyloudnorm.Meter(rate).integrated_loudness(audio)
        levels.append(level)
        assert level == pytest.approx(FILE_LOUDNESS_LUFS, abs=1.0), (emotion, volume, level)
        assert job["result"]["loudness_lufs"] == pytest.approx(level, abs=0.2)
        assert np.abs(audio).max() <= CEILING, (emotion, volume)
        assert job["result"]["true_peak_dbtp"] <= TRUE_PEAK_CEILING_DBTP + 0.01
    print(f"loudness of five jobs: {', '.join(f'{x:.2f}' for x in levels)} LUFS "
          f"(spread {max(levels) - min(levels):.2f} LU)")
    # Off: the voice's own level, where volume still counts.
    _, quiet = finished(client, {"volume": 0.3, "loudness": "off"})
    audio, rate = sf.read(io.BytesIO(quiet))
    assert pyloudnorm.Meter(rate).integrated_loudness(audio) < FILE_LOUDNESS_LUFS - 6


def test_the_telephone_is_hotter_and_each_streamed_chunk_carries_its_own_estimate(client, worker, data_dir):
    job, data = finished(client, {"format": "mulaw", "emotion": "sad"})
    audio, rate = sf.read(io.BytesIO(data))
    assert rate == 8000
    level = pyloudnorm.Meter(rate).integrated_loudness(audio)
    assert level == pytest.approx(TELEPHONE_LOUDNESS_LUFS, abs=1.0)
    assert np.abs(audio).max() <= CEILING
    # The stream's pieces: each chunk at the gain its own measurement gave, near the target too.
    folder = data_dir / "audio" / job["id"][:2]
    pieces = sorted(folder.glob(f"{job['id']}.c*.mulaw-raw"))
    assert len(pieces) == job["progress"]["chunks_total"] >= 2
    for piece in pieces:
        samples, _ = sf.read(piece, samplerate=8000, channels=1, format="RAW", subtype="ULAW")
        assert pyloudnorm.Meter(8000).integrated_loudness(samples) == pytest.approx(TELEPHONE_LOUDNESS_LUFS, abs=1.5)
        assert np.abs(samples).max() <= CEILING


@pytest.mark.parametrize("body,code,field", [
    ({"format": "mulaw", "sample_rate": 16000}, "unsupported_sample_rate", "sample_rate"),
    ({"format": "alaw-raw", "sample_rate": 24000}, "unsupported_sample_rate", "sample_rate"),
    ({"loudness": -3}, None, "loudness"),
    ({"loudness": "loud"}, None, "loudness"),
])
def test_bad_rates_and_targets_are_clear_422s(client, body, code, field):
    response = client.post("/v1/jobs", json={"text": "你好。", **body})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert field in (error.get("field") or "") + error["message"]
    if code:
        assert error["code"] == code and "8000" in error["message"]
