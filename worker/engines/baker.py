"""What the engines that speak the Baker FastSpeech2 voice share: symbols, marks, prosody inputs."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from worker import pitch
from worker.assets import VoiceAssets
from worker.text.g2p import G2P, Phonemes

from .base import Mark, SynthesisConfig, VoiceInfo

SAMPLE_RATE = 24000
HOP = 300  # samples per mel frame of the Multi-band MelGAN vocoder
VOICES = [VoiceInfo("baker", "zh-CN", "female", "Baker corpus Mandarin voice (non-commercial)")]


def load_g2p(found: VoiceAssets) -> G2P:
    with open(found.mapper, encoding="utf-8") as fh:
        mapper = json.load(fh)
    return G2P(mapper["symbol_to_id"], mapper["pinyin_dict"])


@dataclass(frozen=True)
class ModelInputs:
    """The acoustic model's scalar controls for one segment."""

    speed_ratio: float
    f0_ratio: float
    energy_ratio: float
    f0_offset: float
    residual_pitch: float  # what the model could not do cleanly, left for WORLD


def model_inputs(config: SynthesisConfig) -> ModelInputs:
    offset, residual = pitch.split(config.pitch)
    return ModelInputs(
        # The model's speed_ratios multiplies durations, so a faster voice is a smaller ratio.
        speed_ratio=1.0 / config.speed,
        f0_ratio=config.pitch_range,
        energy_ratio=config.energy,
        f0_offset=offset,
        residual_pitch=residual,
    )


def marks_from_durations(phonemes: Phonemes, durations: np.ndarray, n_frames: int) -> list[Mark]:
    """Per-character start and end, from the frames the model gave each symbol."""
    durations = np.maximum(np.asarray(durations, dtype=np.float64).reshape(-1), 0)
    total = durations.sum()
    # The mel length is the rounded sum of durations; rescale so marks end where the audio ends.
    scale = n_frames / total if total > 0 else 0.0
    edges = np.concatenate([[0.0], np.cumsum(durations)]) * scale * HOP * 1000.0 / SAMPLE_RATE
    return [
        Mark(char, round(float(edges[start]), 1), round(float(edges[end]), 1), index)
        for char, start, end, index in phonemes.chars
    ]
