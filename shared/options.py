"""The synthesis options every engine and every caller agree on: names, ranges, formats, rates."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

EMOTIONS = ("neutral", "happy", "sad", "angry", "calm", "surprised")
FORMATS = ("wav", "flac", "ogg", "opus", "mp3", "pcm")
SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
# libopus encodes only at these rates; other rates get a clear error, never a silent resample.
OPUS_RATES = (8000, 16000, 24000, 48000)

CONTENT_TYPES = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "opus": "audio/ogg; codecs=opus",
    "mp3": "audio/mpeg",
    "pcm": "audio/L16",
}
EXTENSIONS = {"wav": "wav", "flac": "flac", "ogg": "ogg", "opus": "opus", "mp3": "mp3", "pcm": "pcm"}

Format = Literal["wav", "flac", "ogg", "opus", "mp3", "pcm"]
SampleRate = Literal[8000, 16000, 22050, 24000, 44100, 48000]


class SynthesisOptions(BaseModel):
    """How to speak: the part of a request that changes the audio (and so the cache key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    voice: str | None = Field(None, max_length=64, description="engine voice; None is its default")
    emotion: str = Field("neutral", max_length=32)
    speed: float = Field(1.0, ge=0.5, le=2.0)
    pitch: float = Field(1.0, ge=0.5, le=2.0)
    volume: float = Field(1.0, ge=0.0, le=2.0)
    format: Format = "wav"
    sample_rate: SampleRate | None = Field(None, description="None is the engine's native rate")
    marks: bool = False


def check_format_rate(fmt: str, rate: int | None) -> str | None:
    """Return an error message when the format cannot carry that rate, else None."""
    if fmt == "opus" and rate is not None and rate not in OPUS_RATES:
        return f"opus supports sample rates {', '.join(map(str, OPUS_RATES))}; got {rate}"
    return None
