"""The engine contract: load once, then turn text segments into audio chunks with timing marks."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Prosody:
    """Per-segment controls. Ratios are relative to the model's own default (1.0)."""

    speed: float = 1.0
    pitch: float = 1.0
    energy: float = 1.0
    # Emphasis of the pitch contour (the model's own f0_ratios input): spread, not level.
    pitch_range: float = 1.0
    # For engines with trained emotions (native_emotions = True); others get it as a recipe.
    emotion: str = "neutral"


@dataclass(frozen=True)
class Mark:
    """One spoken character and where it sits in the chunk, in milliseconds."""

    char: str
    start_ms: float
    end_ms: float


@dataclass
class AudioChunk:
    samples: np.ndarray  # mono float32 in [-1, 1]
    sample_rate: int
    marks: list[Mark] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True)
class VoiceInfo:
    name: str
    language: str
    gender: str
    description: str = ""


class Engine(Protocol):
    """What every engine offers. Optional extras, looked up with getattr:

    - `emotions` (tuple of names) and `native_emotions` (True when the model speaks them itself;
      otherwise the synthesizer applies worker/emotions.py's prosody recipes);
    - `check(settings)`, a classmethod: cheap start-up checks run before a worker forks;
    - `synthesize_batch(items)`: many segments at once, for worker/batcher.py.
    """

    name: str
    model_version: str
    sample_rate: int
    voices: list[VoiceInfo]

    @classmethod
    def load(cls, settings) -> "Engine":
        """Do all the I/O: find, verify and load the model. Called once per worker process."""
        ...

    def synthesize(self, text: str, prosody: Prosody, voice: str | None = None) -> AudioChunk:
        """Synthesize one segment (already normalised and split by the caller)."""
        ...
