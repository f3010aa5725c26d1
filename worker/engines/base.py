"""The engine contract: load once, then turn text segments into audio with timing marks.

An engine subclasses `Engine`, sets its identity (name, model_version, sample_rate, voices), and
implements `load` and `synthesize`. Everything else has a declared default here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from shared.options import EMOTIONS

__all__ = ["SegmentAudio", "Engine", "EngineFault", "Mark", "NothingToSay", "SynthesisConfig", "UnknownVoice",
           "VoiceInfo"]


class NothingToSay(ValueError):
    """The segment has no character the voice can speak: it is skipped (silence, no marks)."""


@dataclass(frozen=True)
class SynthesisConfig:
    """Per-call options, the same for `synthesize` and `synthesize_batch`. Ratios are relative to
    the model's own default (1.0); `voice` None is the engine's default voice."""

    voice: str | None = None
    speed: float = 1.0
    pitch: float = 1.0
    energy: float = 1.0
    # Emphasis of the pitch contour (the model's own f0_ratios input): spread, not level.
    pitch_range: float = 1.0
    # For engines with trained emotions (native_emotions = True); others get it as a recipe.
    emotion: str = "neutral"
    # Readings a lexicon or SSML fixed: one tone-numbered syllable or None per character of the
    # segment's text. Engines that read pinyin themselves (the Baker voice's G2P) honour it.
    pinyin: tuple[str | None, ...] | None = None


@dataclass(frozen=True)
class Mark:
    """One spoken character and where it sits in the segment's audio, in milliseconds."""

    char: str
    start_ms: float
    end_ms: float
    index: int | None = None  # where the character sits in the segment's text, when known


@dataclass
class SegmentAudio:
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


class EngineFault(Exception):
    """The engine could not speak a segment. Unlike NothingToSay (a segment skipped), it fails
    the job with `code`."""

    code = "engine_error"


class UnknownVoice(EngineFault):
    code = "unknown_voice"


class Engine:
    """What every engine offers. Subclasses set the identity and implement load and synthesize."""

    name: str
    model_version: str
    sample_rate: int
    voices: list[VoiceInfo]
    # Emotions a request may name. Without native_emotions, the synthesizer turns each into a
    # prosody recipe (worker/emotions.py); with it, the model speaks config.emotion itself.
    emotions: tuple[str, ...] = EMOTIONS
    native_emotions: bool = False
    # True when synthesize_batch really batches (worker/batcher.py groups segments for it).
    supports_batch: bool = False

    @classmethod
    def check(cls, settings) -> None:
        """Cheap start-up checks, run before a worker forks; raise RuntimeError or ValueError
        with a message saying what to install or set."""

    @classmethod
    def load(cls, settings) -> "Engine":
        """Do all the I/O: find, verify and load the model. Called once per worker process."""
        raise NotImplementedError

    def synthesize(self, text: str, config: SynthesisConfig = SynthesisConfig()) -> SegmentAudio:
        """One segment (already normalised and split by the caller). Raises NothingToSay when it
        has nothing speakable, EngineFault when it cannot be spoken."""
        raise NotImplementedError

    def synthesize_pieces(self, text: str, config: SynthesisConfig = SynthesisConfig(),
                          quick_start: bool = True) -> Iterator[SegmentAudio]:
        """One segment as pieces of audio, in order, each as soon as it is made, so that a listener
        hears the start while the rest is vocoded. Laid end to end they are what synthesize()
        gives; the first carries the segment's marks. `quick_start`: make the first piece as small
        as the engine can (a job's first audio), at some cost in throughput. An engine that cannot
        do better yields one."""
        yield self.synthesize(text, config)

    def synthesize_batch(self, items: list[tuple[str, SynthesisConfig]]) -> list[SegmentAudio]:
        """Many segments; each chunk is what synthesize() gives for that segment alone."""
        return [self.synthesize(text, config) for text, config in items]

    def voice(self, name: str | None) -> str:
        """The voice to speak with; raises UnknownVoice for a name this engine lacks."""
        names = [v.name for v in self.voices]
        if name is None:
            return names[0]
        if name not in names:
            raise UnknownVoice(f"unknown voice {name!r} for engine {self.name}; valid: {', '.join(names)}")
        return name
