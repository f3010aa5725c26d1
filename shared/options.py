"""The synthesis options every engine and every caller agree on: names, ranges, formats, rates,
loudness, and what each format's stream is made of."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

EMOTIONS = ("neutral", "happy", "sad", "angry", "calm", "surprised")
# mulaw and alaw are G.711 in a WAV file (format codes 7 and 6); "-raw" is the same bytes with no
# header, as telephony systems (SIP/RTP gateways, Twilio-style media streams) take them.
# aac is an ADTS stream (.aac); m4a is AAC in an MP4 file.
FORMATS = ("wav", "flac", "ogg", "opus", "mp3", "pcm", "aac", "m4a", "mulaw", "alaw", "mulaw-raw", "alaw-raw")
SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
# libopus encodes only at these rates; other rates get a clear error, never a silent resample.
OPUS_RATES = (8000, 16000, 24000, 48000)
# G.711 is the telephone network's codec: 8 kHz, nothing else.
TELEPHONE_FORMATS = ("mulaw", "alaw", "mulaw-raw", "alaw-raw")
TELEPHONE_RATES = (8000,)

CONTENT_TYPES = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "opus": "audio/ogg; codecs=opus",
    "mp3": "audio/mpeg",
    "pcm": "audio/L16",
    "aac": "audio/aac",
    "m4a": "audio/mp4",
    "mulaw": "audio/wav",
    "alaw": "audio/wav",
    # RFC 4856's names for raw G.711.
    "mulaw-raw": "audio/PCMU",
    "alaw-raw": "audio/PCMA",
}
EXTENSIONS = {"wav": "wav", "flac": "flac", "ogg": "ogg", "opus": "opus", "mp3": "mp3", "pcm": "pcm",
              "aac": "aac", "m4a": "m4a", "mulaw": "wav", "alaw": "wav", "mulaw-raw": "ulaw", "alaw-raw": "alaw"}

# What a stream sends of each chunk (the chunk file's kind, written by the worker that spoke it):
# the PCM for wav and pcm; for the others the chunk encoded on its own, in a form whose pieces
# play laid end to end (chained Ogg streams, MP3 and ADTS frames, headerless G.711 bytes).
# flac and m4a are absent: their headers need the whole length, so they do not stream.
STREAM_PIECES = {"wav": "pcm", "pcm": "pcm", "mp3": "mp3", "ogg": "ogg", "opus": "opus", "aac": "aac",
                 "mulaw": "mulaw-raw", "alaw": "alaw-raw", "mulaw-raw": "mulaw-raw", "alaw-raw": "alaw-raw"}
# Formats whose stream starts with a header the worker of chunk 0 writes once per job (a WAV
# header for G.711 of unknown length); the API has no audio stack to make one.
STREAM_HEADERS = ("mulaw", "alaw")
# Stream kinds that can be cut anywhere, since each sample is coded on its own (PCM, G.711): the
# first chunk of these goes out piece by piece while it is spoken (shared/store/pieces.py), and a
# piece sent as soon as it is made is the chunk file's bytes, wherever it is cut. The others
# (mp3, ogg, opus, aac) go out a chunk at a time.
LIVE_KINDS = ("pcm", "mulaw-raw", "alaw-raw")
STREAM_HEADER_KIND = "head"

# Loudness targets (integrated, EBU R128 / ITU-R BS.1770) when a request gives none: files at
# broadcast level (R128's -23 LUFS, which is also where the default voice speaks); the telephone
# formats hotter, since the line and the handset lose level and G.711's noise is relative to full
# scale. The true-peak ceiling holds for every target: a gain that would pass it is cut back to it.
FILE_LOUDNESS_LUFS = -23.0
TELEPHONE_LOUDNESS_LUFS = -20.0
TRUE_PEAK_CEILING_DBTP = -1.0
LOUDNESS_RANGE = (-40.0, -10.0)

Format = Literal["wav", "flac", "ogg", "opus", "mp3", "pcm", "aac", "m4a", "mulaw", "alaw", "mulaw-raw", "alaw-raw"]
SampleRate = Literal[8000, 16000, 22050, 24000, 44100, 48000]
LOUDNESS_HELP = (f"a target in LUFS from {LOUDNESS_RANGE[0]:g} to {LOUDNESS_RANGE[1]:g}, or \"off\"")


def _loudness(value):
    """One check, one message, for the field the user sent: a union would report each of its
    members (`loudness.float`), and a model check no field at all."""
    if value is None or value == "off":
        return value
    try:
        number = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None or not LOUDNESS_RANGE[0] <= number <= LOUDNESS_RANGE[1]:  # NaN fails too
        raise ValueError(f"must be {LOUDNESS_HELP}; got {value!r}")
    return number


# Integrated loudness target in LUFS, "off", or None (the format's default).
Loudness = Annotated[float | Literal["off"] | None, BeforeValidator(_loudness)]


class SynthesisOptions(BaseModel):
    """How to speak: the part of a request that changes the audio (and so the cache key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    voice: str | None = Field(None, max_length=64, description="engine voice; None is its default")
    emotion: str = Field("neutral", max_length=32)
    speed: float = Field(1.0, ge=0.5, le=2.0)
    pitch: float = Field(1.0, ge=0.5, le=2.0)
    volume: float = Field(1.0, ge=0.0, le=2.0)
    format: Format = "wav"
    sample_rate: SampleRate | None = Field(
        None, description="None is the engine's native rate (8000 for the G.711 formats, their only rate)")
    marks: bool = False
    loudness: Loudness = Field(
        None, description=f"integrated loudness target in LUFS ({LOUDNESS_RANGE[0]:g} to {LOUDNESS_RANGE[1]:g}), "
        f"measured over the whole job, with a true-peak ceiling of {TRUE_PEAK_CEILING_DBTP:g} dBTP; \"off\" "
        f"keeps the voice's own level; None is the format's default ({FILE_LOUDNESS_LUFS:g} LUFS for files, "
        f"{TELEPHONE_LOUDNESS_LUFS:g} for mulaw and alaw)")

    @model_validator(mode="before")
    @classmethod
    def _telephone_rate(cls, data):
        # G.711 has one rate, so "the default rate" means 8000 there, not the engine's native rate.
        if isinstance(data, dict) and data.get("format") in TELEPHONE_FORMATS and data.get("sample_rate") is None:
            data = {**data, "sample_rate": TELEPHONE_RATES[0]}
        return data



def loudness_target(options: SynthesisOptions) -> float | None:
    """The job's loudness target in LUFS, or None when loudness is off."""
    if options.loudness == "off":
        return None
    if options.loudness is not None:
        return float(options.loudness)
    return TELEPHONE_LOUDNESS_LUFS if options.format in TELEPHONE_FORMATS else FILE_LOUDNESS_LUFS


def rates_for(fmt: str) -> tuple[int, ...]:
    """The sample rates a format can carry."""
    if fmt in TELEPHONE_FORMATS:
        return TELEPHONE_RATES
    if fmt == "opus":
        return OPUS_RATES
    return SAMPLE_RATES


def check_format_rate(fmt: str, rate: int | None) -> str | None:
    """Return an error message when the format cannot carry that rate, else None."""
    allowed = rates_for(fmt)
    if rate is not None and rate not in allowed:
        if fmt in TELEPHONE_FORMATS:
            return f"{fmt} (G.711, telephone) supports only 8000 Hz; got {rate}"
        return f"{fmt} supports sample rates {', '.join(map(str, allowed))}; got {rate}"
    return None
