"""The PyTorch engine against the LiteRT engine on a fixed corpus: parity, batching, determinism."""
from __future__ import annotations

import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from shared.config import Settings  # noqa: E402
from worker import assets  # noqa: E402
from worker.engines import EngineError, baker  # noqa: E402
from worker.engines.base import SynthesisConfig  # noqa: E402
from worker.engines.litert import LiteRTEngine  # noqa: E402
from worker.engines.torch_bench import CORPUS, bench, corpus_ids  # noqa: E402
from worker.engines.torch_fs2 import TorchEngine  # noqa: E402
from worker.engines.torch_modules import MelGANConfig, pqmf_synthesis_filters  # noqa: E402
from worker.engines.torch_weights import GraphConstants, dequantize  # noqa: E402

# speed_ratio, f0_ratio, energy_ratio, f0_offset (residual pitch is WORLD's, not the model's).
CONTROLS = {
    "default": baker.ModelInputs(1.0, 1.0, 1.0, 0.0, 1.0),
    "slow-wide-loud-high": baker.ModelInputs(1.25, 1.3, 1.2, 0.7, 1.0),
    "fast-flat-soft-low": baker.ModelInputs(0.8, 0.8, 0.9, -1.2, 1.0),
}
# The steered sets each run on half of the corpus, to keep this file under a minute on 2 cores.
SENTENCES = {
    "default": slice(None),
    "slow-wide-loud-high": slice(1, None, 2),
    "fast-flat-soft-low": slice(0, None, 2),
}


def on_device(settings: Settings, device: str) -> Settings:
    # model_copy, not Settings.load: the engine's own check must meet a device the settings refuse.
    return settings.model_copy(update={"engine": settings.engine.model_copy(update={"device": device})})


@pytest.fixture(scope="module")
def cpu_settings() -> Settings:
    return Settings.load(engine={"name": "fastspeech2-torch", "device": "cpu", "threads": 1})


@pytest.fixture(scope="module")
def litert(cpu_settings) -> LiteRTEngine:
    return LiteRTEngine.load(cpu_settings)


@pytest.fixture(scope="module")
def torch_engine(cpu_settings) -> TorchEngine:
    """The PyTorch engine on the CPU."""
    return TorchEngine.load(cpu_settings)


@pytest.fixture(scope="module")
def corpus() -> list[list[int]]:
    return corpus_ids(assets.locate().mapper)


@pytest.fixture(scope="module")
def runs(litert, torch_engine, corpus) -> dict:
    """Per control set, {sentence index: both engines' mel, durations, audio}, one at a time."""
    results = {}
    for name, controls in CONTROLS.items():
        rows = {}
        for index in range(len(corpus))[SENTENCES[name]]:
            ids = corpus[index]
            mel, durations = litert.text_to_mel(ids, controls)
            spectrograms = torch_engine.text_to_mel([ids], [controls])
            rows[index] = {
                "ids": ids,
                "litert": (mel[0], durations, litert.mel_to_audio(mel)),
                "torch": (
                    spectrograms.item(0)[0],
                    spectrograms.durations[0],
                    torch_engine.mel_to_audio(spectrograms)[0],
                ),
            }
        results[name] = rows

    return results


def duration_overlap(rows) -> float:
    """Frames that both engines give to the same symbol, over all frames: sum(min) / sum(max)."""
    both = sum(np.minimum(r["litert"][1], r["torch"][1]).sum() for r in rows)
    either = sum(np.maximum(r["litert"][1], r["torch"][1]).sum() for r in rows)
    return both / either


def aligned_mel_mae(row) -> float:
    """Mean |difference| of the mels, frame against frame within each symbol, so that a symbol
    one frame longer in one engine does not shift the comparison of everything after it."""
    (mel_a, dur_a, _), (mel_b, dur_b, _) = row["litert"], row["torch"]
    start_a, start_b = np.cumsum(dur_a) - dur_a, np.cumsum(dur_b) - dur_b
    frames_a, frames_b = [], []
    for k, shared in enumerate(np.minimum(dur_a, dur_b)):
        frames_a.extend(range(start_a[k], start_a[k] + shared))
        frames_b.extend(range(start_b[k], start_b[k] + shared))
    return float(np.abs(mel_a[frames_a] - mel_b[frames_b]).mean())


def log_spectral_distance(reference: np.ndarray, other: np.ndarray) -> float:
    """Mean |dB difference| of 1024-point STFT magnitudes, bins floored 60 dB under the peak."""
    def magnitudes(x):
        window = np.hanning(1024)
        frames = np.lib.stride_tricks.sliding_window_view(x, 1024)[::256] * window
        return np.abs(np.fft.rfft(frames, axis=1))

    a, b = magnitudes(reference), magnitudes(other)
    floor = a.max() * 1e-3
    return float(np.mean(np.abs(20 * np.log10(np.maximum(a, floor) / np.maximum(b, floor)))))


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    noise = np.sum((reference - other) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(reference ** 2) / noise))


# ----------------------------------------------------------------------------- the port itself


def test_pqmf_filters_are_the_graphs():
    cfg = MelGANConfig()
    graph = GraphConstants(assets.locate().vocoder)
    stored = graph.constants("conv1d")[0][0, 0].T  # [taps + 1, subbands] in the file
    built = pqmf_synthesis_filters(cfg.subbands, cfg.pqmf_taps, cfg.pqmf_cutoff, cfg.pqmf_beta)
    np.testing.assert_allclose(built, stored, atol=1e-7)


def test_dequantize_per_tensor_and_per_channel():
    codes = np.array([[-128, 0, 127], [10, -10, 5]], dtype=np.int8)
    per_tensor = types.SimpleNamespace(scale=[0.5], zeroPoint=[0], quantizedDimension=0)
    np.testing.assert_array_equal(dequantize(codes, per_tensor), codes.astype(np.float32) * 0.5)
    per_channel = types.SimpleNamespace(scale=[0.5, 2.0], zeroPoint=[0, 1], quantizedDimension=0)
    expected = np.array([[-64, 0, 63.5], [18, -22, 8]], dtype=np.float32)
    np.testing.assert_array_equal(dequantize(codes, per_channel), expected)


# ----------------------------------------------------------------------------- parity with LiteRT


@pytest.mark.parametrize("controls", list(CONTROLS))
def test_durations_match_litert(runs, controls):
    rows = list(runs[controls].values())
    assert duration_overlap(rows) >= 0.99
    symbols = sum(len(r["ids"]) for r in rows)
    same = sum(int((r["litert"][1] == r["torch"][1]).sum()) for r in rows)
    assert same / symbols >= 0.98


@pytest.mark.parametrize("controls", list(CONTROLS))
def test_mels_match_litert(runs, controls):
    rows = list(runs[controls].values())
    maes = [aligned_mel_mae(r) for r in rows]
    assert np.mean(maes) < 0.02
    # Where no duration differs, every sentence on its own is within the tolerance.
    exact = [m for m, r in zip(maes, rows) if np.array_equal(r["litert"][1], r["torch"][1])]
    assert len(exact) >= len(rows) // 2
    assert max(exact) < 0.02


@pytest.mark.parametrize("controls", list(CONTROLS))
def test_audio_matches_litert(runs, controls):
    for row in runs[controls].values():
        if np.array_equal(row["litert"][1], row["torch"][1]):
            reference, audio = row["litert"][2], row["torch"][2]
            assert len(audio) == len(reference)
            assert log_spectral_distance(reference, audio) < 3.0


def test_vocoder_matches_litert_on_the_same_mel(runs, torch_engine):
    for row in list(runs["default"].values())[:4]:
        mel, _, reference = row["litert"]
        with torch.inference_mode():
            audio = torch_engine.vocoder(torch.from_numpy(mel[None]), [len(mel)])[0].numpy()
        # Equal but for a rare sub-band sample that lands on the other side of an int8
        # rounding step (1/128), which moves the output by at most about 0.008.
        assert np.abs(audio - reference).max() < 0.02
        assert snr_db(reference, audio) > 50


def test_synthesize_matches_litert_through_the_g2p(litert, torch_engine, sample_rate):
    # Pitch 1.3 is past what the f0 offset does cleanly: both engines hand the rest to WORLD.
    config = SynthesisConfig(speed=1.1, pitch=1.3, energy=1.1)
    text = "今天的会议改到下午三点。"
    ours, theirs = torch_engine.synthesize(text, config), litert.synthesize(text, config)
    assert ours.sample_rate == theirs.sample_rate == sample_rate
    assert [m.char for m in ours.marks] == [m.char for m in theirs.marks]
    ends = np.array([[m.start_ms, m.end_ms] for m in ours.marks])
    their_ends = np.array([[m.start_ms, m.end_ms] for m in theirs.marks])
    assert np.abs(ends - their_ends).max() <= 2 * baker.HOP * 1000 / baker.SAMPLE_RATE
    assert abs(len(ours.samples) - len(theirs.samples)) <= 2 * baker.HOP



def test_fixed_readings_reach_both_engines(litert, torch_engine):
    # SSML phonemes and lexicons arrive as SynthesisConfig.pinyin: both engines speak them alike.
    text = "银行行长"
    fixed = SynthesisConfig(pinyin=(None, None, "xing2", "zhang3"))
    for engine in (litert, torch_engine):
        free, read = engine.synthesize(text), engine.synthesize(text, fixed)
        assert not (len(free.samples) == len(read.samples) and np.allclose(free.samples, read.samples))
    ours, theirs = torch_engine.synthesize(text, fixed), litert.synthesize(text, fixed)
    assert abs(len(ours.samples) - len(theirs.samples)) <= 2 * baker.HOP
    assert [m.index for m in ours.marks] == [m.index for m in theirs.marks] == [0, 1, 2, 3]


# ----------------------------------------------------------------------------- batching


def test_batch_equals_one_at_a_time(runs, torch_engine, corpus):
    # Every other sentence with non-default controls: each item keeps its own.
    names = ["default" if i % 2 == 0 else "slow-wide-loud-high" for i in range(len(corpus))]
    spectrograms = torch_engine.text_to_mel(corpus, [CONTROLS[n] for n in names])
    audio = torch_engine.mel_to_audio(spectrograms)
    for i, name in enumerate(names):
        single_mel, single_durations, single_audio = runs[name][i]["torch"]
        np.testing.assert_array_equal(spectrograms.durations[i], single_durations)
        assert spectrograms.frames[i] == len(single_mel)
        mel = spectrograms.item(i)[0]
        assert np.abs(mel - single_mel).mean() < 1e-4
        assert np.abs(mel - single_mel).max() < 0.1
        assert len(audio[i]) == len(single_audio) == len(single_mel) * baker.HOP
        assert snr_db(single_audio, audio[i]) > 40


def test_synthesize_batch_keeps_marks_per_segment(torch_engine):
    items = [("你好。", SynthesisConfig()), ("欢迎使用语音合成服务。", SynthesisConfig(speed=1.3)),
             ("春眠不觉晓。", SynthesisConfig(pitch=0.9, energy=0.8))]
    batched = torch_engine.synthesize_batch(items)
    for (text, config), chunk in zip(items, batched):
        alone = torch_engine.synthesize(text, config)
        assert chunk.marks == alone.marks
        assert len(chunk.samples) == len(alone.samples)
        assert snr_db(alone.samples, chunk.samples) > 40
        assert 0 < chunk.marks[-1].end_ms < 1000 * chunk.duration_s  # the closing silence follows


def test_item_without_frames_gets_empty_audio(torch_engine, corpus):
    none = baker.ModelInputs(0.001, 1.0, 1.0, 0.0, 1.0)  # every duration rounds to zero
    spectrograms = torch_engine.text_to_mel(corpus[:2], [none, CONTROLS["default"]])
    audio = torch_engine.mel_to_audio(spectrograms)
    assert spectrograms.frames[0] == 0 and len(audio[0]) == 0
    assert len(audio[1]) == spectrograms.frames[1] * baker.HOP > 0


def test_deterministic(torch_engine, corpus):
    controls = [CONTROLS["default"], CONTROLS["fast-flat-soft-low"], CONTROLS["default"]]
    first = torch_engine.mel_to_audio(torch_engine.text_to_mel(corpus[:3], controls))
    second = torch_engine.mel_to_audio(torch_engine.text_to_mel(corpus[:3], controls))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_bench_reports_throughput_and_ratio(cpu_settings):
    rows = bench([1, 2], "cpu", cpu_settings, repeats=1, sentences=2)
    assert [row["batch"] for row in rows] == [1, 2]
    for row in rows:
        assert row["throughput"] > 0 and row["litert_throughput"] > 0
        assert row["rtf"] == pytest.approx(1 / row["throughput"], rel=0.01)
        assert row["ratio_to_litert"] == pytest.approx(
            row["throughput"] / row["litert_throughput"], rel=0.01
        )
    assert rows[0]["gain_vs_batch_1"] == 1.0


def test_corpus_has_ten_sentences_or_more():
    assert len(CORPUS) >= 10


def test_check_says_what_is_missing(cpu_settings):
    TorchEngine.check(cpu_settings)
    with pytest.raises(EngineError, match="VOXQ_DEVICE"):
        TorchEngine.check(on_device(cpu_settings, "tpu"))
    if torch.cuda.device_count() == 0:
        with pytest.raises(EngineError, match="cuda"):
            TorchEngine.check(on_device(cpu_settings, "cuda"))


# ----------------------------------------------------------------------------- CUDA


@pytest.mark.gpu
def test_cuda_matches_cpu_and_is_deterministic(torch_engine, corpus, cpu_settings):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    gpu = TorchEngine.load(on_device(cpu_settings, "cuda"))
    controls = [CONTROLS["default"]] * len(corpus)
    cpu_mels = torch_engine.text_to_mel(corpus, controls)
    gpu_mels = gpu.text_to_mel(corpus, controls)
    both = either = 0
    for i in range(len(corpus)):
        both += np.minimum(cpu_mels.durations[i], gpu_mels.durations[i]).sum()
        either += np.maximum(cpu_mels.durations[i], gpu_mels.durations[i]).sum()
        if np.array_equal(cpu_mels.durations[i], gpu_mels.durations[i]):
            assert np.abs(cpu_mels.item(i) - gpu_mels.item(i)).mean() < 0.02
    assert both / either >= 0.99
    first, second = gpu.mel_to_audio(gpu_mels), gpu.mel_to_audio(gpu.text_to_mel(corpus, controls))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
