"""The default engine on the real model: assets, determinism, marks, speed, streaming, length."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from shared import plan
from shared.config import Settings
from shared.options import SynthesisOptions
from shared.text.segmenter import Segment
from tests.audio_checks import rms, voiced_fraction
from worker import assets, pipeline, synthesizer
from worker.engines.base import SynthesisConfig
from worker.pipeline import Pipeline


def test_assets_are_verified_by_hash(tmp_path):
    found = assets.locate()
    for path in (found.acoustic, found.vocoder, found.mapper):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    assert assets.locate(tmp_path).acoustic == tmp_path / assets.ACOUSTIC
    with open(tmp_path / assets.VOCODER, "r+b") as fh:  # one flipped byte
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(assets.AssetError, match="sha256"):
        assets.locate(tmp_path)
    (tmp_path / assets.MAPPER).unlink()
    with pytest.raises(assets.AssetError, match="missing"):
        assets.locate(tmp_path)


def test_speech_is_real_and_deterministic(engine, sample_rate):
    first = engine.synthesize("语音合成系统把文字转换成自然的语音。", SynthesisConfig())
    second = engine.synthesize("语音合成系统把文字转换成自然的语音。", SynthesisConfig())
    assert first.sample_rate == sample_rate
    assert np.array_equal(first.samples, second.samples)
    assert 1.5 < first.duration_s < 6
    assert rms(first.samples) > 0.02
    # Speech is mostly voiced; noise or silence is not.
    assert voiced_fraction(first.samples, sample_rate) > 0.5


def test_marks_cover_every_character_in_order(engine):
    text = "今天天气很好"
    chunk = engine.synthesize(text, SynthesisConfig())
    assert [m.char for m in chunk.marks] == list(text)
    ends = 0.0
    for mark in chunk.marks:
        assert mark.start_ms >= ends - 1e-6
        assert mark.end_ms > mark.start_ms
        ends = mark.end_ms
    assert ends <= chunk.duration_s * 1000 + 1


def test_speed_changes_duration(engine):
    normal = engine.synthesize("请在十分钟后回电话。", SynthesisConfig()).duration_s
    fast = engine.synthesize("请在十分钟后回电话。", SynthesisConfig(speed=1.25)).duration_s
    slow = engine.synthesize("请在十分钟后回电话。", SynthesisConfig(speed=0.8)).duration_s
    assert fast < normal * 0.9
    assert slow > normal * 1.1


def test_render_joins_segments_with_pauses_and_offsets_marks(engine, tmp_path, sample_rate):
    settings = Settings.load()
    out, marks = tmp_path / "out.wav", tmp_path / "marks.json"
    result = pipeline.speak(engine, "你好。再见！", SynthesisOptions(marks=True), out, settings, marks)
    audio, rate = sf.read(out, dtype="float32")
    assert rate == sample_rate and len(plan.segments("你好。再见！", settings)) == 2
    assert abs(len(audio) / rate - result.duration_s) < 0.01
    import json

    everything = json.loads(marks.read_text(encoding="utf-8"))
    entries = [e for e in everything if e["type"] == "char"]
    assert [e["value"] for e in entries] == list("你好再见")
    assert [(e["start"], e["end"]) for e in entries] == [(0, 1), (1, 2), (3, 4), (4, 5)]
    sentences = [e for e in everything if e["type"] == "sentence"]
    assert [(e["value"], e["start"], e["end"]) for e in sentences] == [("你好。", 0, 3), ("再见！", 3, 6)]
    assert sentences[1]["start_ms"] >= sentences[0]["end_ms"] + settings.text.sentence_pause_s * 1000 * 0.9
    # The second sentence starts after the first one and its sentence pause.
    assert entries[2]["start_ms"] >= entries[1]["end_ms"] + settings.text.sentence_pause_s * 1000 * 0.9
    assert entries[-1]["end_ms"] <= result.duration_s * 1000 + 1


def test_limits(settings):
    with pytest.raises(plan.PlanError, match="100000"):
        plan.segments("好" * (settings.limits.max_chars + 1), settings)
    assert plan.segments("好", settings)
    # The maximum length is accepted and split into bounded segments.
    segments = plan.segments("好" * settings.limits.max_chars, settings)
    assert max(len(s.text) for s in segments) <= settings.text.max_segment_chars + 1


@pytest.mark.slow
def test_long_text_streams_to_disk_in_bounded_memory(engine, tmp_path, sample_rate):
    # The one-piece path holds one chunk at a time, whole, to measure its loudness before writing
    # it: memory follows the chunk size, never the text's length. Small chunks make that visible.
    settings = Settings.load(text={"chunk_s": 5.0})
    text = "科学家们经过多年的努力，终于在这个领域取得了重大突破。" * 60  # 1,620 characters
    out = tmp_path / "long.wav"
    # The front end's dictionaries (jieba, pypinyin) load once per process, on first use: load
    # them before measuring, so the figure is the same whichever test ran first.
    pipeline.speak(engine, text[:30], SynthesisOptions(), tmp_path / "warm.wav", settings)
    tracemalloc.start()
    result = pipeline.speak(engine, text, SynthesisOptions(), out, settings)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    audio_bytes = result.duration_s * sample_rate * 4  # what holding it whole as float32 would take
    assert result.duration_s > 300
    assert out.stat().st_size > 10_000_000
    # Peak Python-side memory is a few chunks, not the whole recording.
    assert peak < audio_bytes / 5, (peak, audio_bytes)


def test_windowed_vocoder_is_identical_to_one_call(engine):
    from worker.engines import baker

    phonemes = engine.g2p.convert("随着人工智能技术的快速发展，越来越多的企业开始在客户服务中使用智能语音助手")
    mel, _ = engine.text_to_mel(phonemes.ids, baker.model_inputs(SynthesisConfig()))
    assert mel.shape[1] > 300  # long enough for several windows
    assert np.array_equal(engine.mel_to_audio(mel), engine._vocode(mel))


def test_an_engine_error_fails_the_job_with_its_own_reason_not_nothing_to_say(engine, settings, tmp_path):
    # Options are checked once per job (check_options); an engine that still cannot speak a
    # segment raises its own fault, which must not be mistaken for "nothing to say".
    options = SynthesisOptions(voice="nobody")
    with pytest.raises(synthesizer.SynthesisError) as err:
        Pipeline(engine, settings).check(options)
    assert err.value.code == "unknown_voice"
    segments = plan.segments("你好。", settings)
    with pytest.raises(synthesizer.SynthesisError) as err:
        Pipeline(engine, settings).render(segments, options, tmp_path / "x.wav")
    assert err.value.code == "unknown_voice" and "nobody" in str(err.value)
    assert not (tmp_path / "x.wav").exists()
    # A segment with nothing speakable is skipped; only a job with nothing at all is nothing_to_say.
    speakable, unspeakable = Segment("你好。", "sentence"), Segment("兙。", "sentence")
    result = Pipeline(engine, settings).render([speakable, unspeakable], SynthesisOptions(), tmp_path / "y.wav")
    assert result.duration_s > 0.3
    with pytest.raises(synthesizer.SynthesisError) as err:
        Pipeline(engine, settings).render([unspeakable], SynthesisOptions(), tmp_path / "z.wav")
    assert err.value.code == "nothing_to_say"
