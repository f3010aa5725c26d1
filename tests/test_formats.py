"""Every format at every sample rate it takes: written, read back (soundfile; PyAV for AAC), the
right rate, length and sound; G.711's header and telephone band; loudness in the one-piece path."""
from __future__ import annotations

import av
import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from shared.options import (FORMATS, TELEPHONE_FORMATS, TRUE_PEAK_CEILING_DBTP, SynthesisOptions,
                            rates_for)
from tests.audio_checks import rms
from worker import pipeline, synthesizer

TEXT = "你好，欢迎使用语音合成。"
AAC = ("aac", "m4a")
CASES = [(f, r) for f in FORMATS for r in rates_for(f)]
AAC_FRAME = 1024  # samples in one AAC frame
# An ADTS stream cannot say how many priming samples the encoder put first (an M4A's edit list
# does), so its decoded length is the speech plus one frame of priming, plus up to a frame of padding.
ADTS_PRIMING = 1024
RAW_SUBTYPES = {"pcm": "PCM_16", "mulaw-raw": "ULAW", "alaw-raw": "ALAW"}


def read_back(path, fmt, rate):
    if fmt in RAW_SUBTYPES:
        return sf.read(path, samplerate=rate, channels=1, format="RAW", subtype=RAW_SUBTYPES[fmt],
                       endian="LITTLE", dtype="float32")
    if fmt in AAC:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            assert stream.codec_context.name == "aac"
            blocks = [frame.to_ndarray().reshape(-1) for frame in container.decode(stream)]
            return np.concatenate(blocks).astype(np.float32), stream.codec_context.sample_rate
    return sf.read(path, dtype="float32")


@pytest.mark.parametrize("fmt,rate", CASES)
def test_round_trip(engine, settings, tmp_path, fmt, rate):
    path = tmp_path / f"out.{fmt}"
    result = pipeline.speak(engine, TEXT, SynthesisOptions(format=fmt, sample_rate=rate), path, settings)
    audio, read_rate = read_back(path, fmt, rate)
    assert read_rate == rate == result.sample_rate
    frames = round(result.duration_s * rate)
    rounding = rate / 2000 + 1  # duration_s is rounded to the millisecond
    if fmt == "aac":
        assert -rounding <= len(audio) - ADTS_PRIMING - frames < AAC_FRAME + rounding
    elif fmt == "m4a":
        assert abs(len(audio) - frames) < AAC_FRAME + rounding
    elif fmt in TELEPHONE_FORMATS:
        assert abs(len(audio) - frames) <= rounding
        if fmt.endswith("-raw"):
            assert result.bytes == len(audio)  # one byte a sample, nothing else
    else:
        # Lossy codecs pad a little at the ends; the length must still match the speech.
        assert len(audio) / rate == pytest.approx(result.duration_s, abs=0.1)
    assert 1.0 < len(audio) / rate < 5.0
    assert rms(audio) > 0.02, "silent output"
    assert np.isfinite(audio).all()


@pytest.mark.parametrize("fmt,code", [("mulaw", 7), ("alaw", 6)])
def test_g711_wav_says_its_format_code_and_is_band_limited(engine, settings, tmp_path, fmt, code):
    path = tmp_path / "line.wav"
    # No rate asked for: G.711's only rate, not the engine's 24 kHz.
    result = pipeline.speak(engine, TEXT, SynthesisOptions(format=fmt), path, settings)
    header = path.read_bytes()[:36]
    assert header[:4] == b"RIFF" and header[8:16] == b"WAVEfmt "
    assert int.from_bytes(header[20:22], "little") == code  # WAVE_FORMAT_MULAW / WAVE_FORMAT_ALAW
    assert int.from_bytes(header[24:28], "little") == 8000 == result.sample_rate
    assert int.from_bytes(header[34:36], "little") == 8  # bits per sample
    audio, _ = sf.read(path, dtype="float64")
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    hz = np.fft.rfftfreq(len(audio), 1 / 8000)
    outside = spectrum[(hz < 200) | (hz > 3700)].sum() / spectrum.sum()
    assert outside < 0.01, f"{outside:.1%} of the energy is outside the telephone band"


@pytest.mark.parametrize("fmt", TELEPHONE_FORMATS)
def test_g711_takes_only_8000(engine, settings, tmp_path, fmt):
    with pytest.raises(synthesizer.SynthesisError, match=f"{fmt} .G.711, telephone. supports only 8000 Hz; got 16000"):
        pipeline.speak(engine, TEXT, SynthesisOptions(format=fmt, sample_rate=16000), tmp_path / "x", settings)
    assert not (tmp_path / "x").exists()


def test_opus_rejects_rates_it_cannot_encode(engine, settings, tmp_path):
    with pytest.raises(synthesizer.SynthesisError, match="opus supports"):
        pipeline.speak(engine, TEXT, SynthesisOptions(format="opus", sample_rate=44100),
                           tmp_path / "x.opus", settings)
    assert not (tmp_path / "x.opus").exists()


@pytest.mark.parametrize("loudness", [-16.0, -30.0])
def test_the_one_piece_path_meets_a_loudness_target(engine, settings, tmp_path, loudness):
    path = tmp_path / "out.wav"
    result = pipeline.speak(engine, TEXT * 3, SynthesisOptions(loudness=loudness, volume=0.6), path, settings)
    audio, rate = sf.read(path)
    measured = pyloudnorm.Meter(rate).integrated_loudness(audio)
    # -16 LUFS is past what this voice's peaks allow under the ceiling: it stops at the ceiling.
    expected = min(loudness, result.loudness_lufs)
    assert measured == pytest.approx(expected, abs=0.2)
    assert result.true_peak_dbtp <= TRUE_PEAK_CEILING_DBTP + 0.01
    assert np.abs(audio).max() <= 10 ** (TRUE_PEAK_CEILING_DBTP / 20)
