"""Emotion presets and prosody controls, measured on real audio from the real model."""
from __future__ import annotations

import pytest
import soundfile as sf

from shared.options import SynthesisOptions
from tests.audio_checks import mean_f0, median_f0, rms
from worker import pipeline

TEXT = "春天来了，公园里的花都开了，到处都是欢声笑语。"


@pytest.fixture(scope="module")
def rendered(engine, settings, tmp_path_factory):
    folder = tmp_path_factory.mktemp("prosody")
    cache = {}

    def render(**options):
        # Loudness off: the emotions' and the volume's own levels are under test, not normalised away.
        options.setdefault("loudness", "off")
        key = tuple(sorted(options.items()))
        if key not in cache:
            path = folder / f"{len(cache)}.wav"
            pipeline.speak(engine, TEXT, SynthesisOptions(**options), path, settings)
            cache[key] = sf.read(path, dtype="float32")
        return cache[key]

    return render


def test_happy_is_higher_than_neutral_which_is_higher_than_sad(rendered):
    happy, neutral, sad = (mean_f0(*rendered(emotion=e)) for e in ("happy", "neutral", "sad"))
    assert happy > neutral * 1.03, (happy, neutral)
    assert neutral > sad * 1.03, (neutral, sad)


def test_sad_speaks_slower(rendered):
    sad, rate = rendered(emotion="sad")
    neutral, _ = rendered(emotion="neutral")
    assert len(sad) > len(neutral) * 1.1


def test_angry_is_louder(rendered):
    angry, _ = rendered(emotion="angry")
    neutral, _ = rendered(emotion="neutral")
    assert rms(angry) > rms(neutral) * 1.2


@pytest.mark.parametrize("ratio", [0.6, 0.85, 1.15, 1.6])
def test_pitch_moves_the_f0_level_by_the_ratio(rendered, ratio):
    base = median_f0(*rendered())
    shifted = median_f0(*rendered(pitch=ratio))
    assert shifted / base == pytest.approx(ratio, rel=0.12), (base, shifted)


def test_volume_scales_loudness(rendered):
    quiet, _ = rendered(volume=0.5)
    normal, _ = rendered()
    assert rms(quiet) == pytest.approx(rms(normal) * 0.5, rel=0.05)


def test_speed_scales_duration(rendered):
    fast, _ = rendered(speed=1.5)
    normal, _ = rendered()
    assert len(fast) < len(normal) * 0.8
