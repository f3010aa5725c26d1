"""Every format at every sample rate: written, read back with soundfile, the right rate, length and sound."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from shared.options import FORMATS, OPUS_RATES, SAMPLE_RATES, SynthesisOptions
from tests.audio_checks import rms
from worker import synthesizer

TEXT = "你好，欢迎使用语音合成。"
CASES = [(f, r) for f in FORMATS for r in SAMPLE_RATES if not (f == "opus" and r not in OPUS_RATES)]


def read_back(path, fmt, rate):
    if fmt == "pcm":
        return sf.read(path, samplerate=rate, channels=1, format="RAW", subtype="PCM_16",
                       endian="LITTLE", dtype="float32")
    return sf.read(path, dtype="float32")


@pytest.mark.parametrize("fmt,rate", CASES)
def test_round_trip(engine, settings, tmp_path, fmt, rate):
    path = tmp_path / f"out.{fmt}"
    result = synthesizer.speak(engine, TEXT, SynthesisOptions(format=fmt, sample_rate=rate), path, settings)
    audio, read_rate = read_back(path, fmt, rate)
    assert read_rate == rate == result.sample_rate
    seconds = len(audio) / rate
    # Lossy codecs pad a little at the ends; the length must still match the speech.
    assert seconds == pytest.approx(result.duration_s, abs=0.1)
    assert 1.0 < seconds < 5.0
    assert rms(audio) > 0.02, "silent output"
    assert np.isfinite(audio).all()


def test_opus_rejects_rates_it_cannot_encode(engine, settings, tmp_path):
    with pytest.raises(synthesizer.SynthesisError, match="opus supports"):
        synthesizer.speak(engine, TEXT, SynthesisOptions(format="opus", sample_rate=44100),
                           tmp_path / "x.opus", settings)
    assert not (tmp_path / "x.opus").exists()
