"""Emotion presets for voices without trained emotions: each one is a prosody recipe."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    speed: float = 1.0  # >1 is faster (shorter durations)
    pitch: float = 1.0  # multiplies the F0 level
    pitch_range: float = 1.0  # the model's f0_ratios: spread of the contour around its level
    energy: float = 1.0  # the model's energy_ratios
    gain: float = 1.0  # linear gain after the vocoder: the model's energy input barely moves RMS
    pause_scale: float = 1.0  # multiplies sentence and clause pauses


# Values chosen by ear on the Baker voice and checked by tests/test_prosody.py on real audio:
# happy higher and livelier, sad lower, slower and flatter, angry louder and sharper.
PRESETS: dict[str, Preset] = {
    "neutral": Preset(),
    "happy": Preset(speed=1.08, pitch=1.12, pitch_range=1.3, energy=1.2, gain=1.1, pause_scale=0.85),
    "sad": Preset(speed=0.85, pitch=0.9, pitch_range=0.7, energy=0.8, gain=0.8, pause_scale=1.4),
    "angry": Preset(speed=1.1, pitch=1.05, pitch_range=1.4, energy=1.5, gain=1.6, pause_scale=0.7),
    "calm": Preset(speed=0.92, pitch=0.97, pitch_range=0.8, energy=0.9, gain=0.9, pause_scale=1.2),
    "surprised": Preset(speed=1.05, pitch=1.15, pitch_range=1.5, energy=1.2, gain=1.15, pause_scale=0.9),
}
