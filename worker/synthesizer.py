"""Segments to audio: how a job sounds (its voicing), each segment spoken in order, and one chunk of
a job written as its chunk files (shared/chunk_files.py)."""
from __future__ import annotations

import json
import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from shared.chunk_files import META, PCM, ChunkAttempt
from shared.config import Settings
from shared.options import (STREAM_HEADER_KIND, STREAM_PIECES, TELEPHONE_FORMATS, TRUE_PEAK_CEILING_DBTP,
                            SynthesisOptions, loudness_target)
from shared.plan import Canceled, Chunk, Problem
from shared.text.segmenter import Segment
from worker import loudness
from worker.audio import Resampled, stream_header, transcode, write_pcm
from worker.emotions import PRESETS
from worker.engines.base import Engine, EngineFault, NothingToSay, SynthesisConfig
from worker.marks import entries as mark_entries

log = logging.getLogger(__name__)


class SynthesisError(ValueError):
    """The job cannot be spoken; `code` is a stable machine-readable reason."""

    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.field = field

    @classmethod
    def of(cls, problem: Problem) -> "SynthesisError":
        return cls(*problem)


def preset_for(options: SynthesisOptions, engine: Engine):
    # An engine with trained emotions speaks them itself; the others get a prosody recipe.
    if engine.native_emotions:
        return PRESETS["neutral"]
    return PRESETS.get(options.emotion, PRESETS["neutral"])


# What one segment's SSML prosody may bring the voice to, on top of the request's own options.
SPEED_RANGE = (0.25, 4.0)


def config_for(options: SynthesisOptions, engine: Engine, segment: Segment | None = None) -> SynthesisConfig:
    """The engine's per-call options for a job's (the voice, and the emotion's prosody recipe),
    with a segment's own SSML prosody and fixed readings on top."""
    preset = preset_for(options, engine)
    rate = segment.rate if segment else 1.0
    return SynthesisConfig(
        voice=options.voice,
        speed=min(max(options.speed * preset.speed * rate, SPEED_RANGE[0]), SPEED_RANGE[1]),
        pitch=options.pitch * preset.pitch * (segment.pitch if segment else 1.0),
        energy=preset.energy,
        pitch_range=preset.pitch_range * (segment.pitch_range if segment else 1.0),
        emotion=options.emotion,
        pinyin=tuple(segment.pinyin) if segment and segment.pinyin else None,
    )


def pause_after(segment: Segment, pauses: dict[str, float], last: bool) -> float:
    """Seconds of silence after a segment: an SSML break's own time, else its punctuation's
    pause (none after the last segment)."""
    if segment.pause_s is not None:
        return segment.pause_s
    return 0.0 if last else pauses[segment.pause]


class Voicing:
    """How one job sounds, whichever worker speaks which part: the engine's per-call config, the
    gain and the pauses, from the job's options, its emotion's recipe, and each segment's SSML."""

    def __init__(self, engine: Engine, options: SynthesisOptions, settings: Settings):
        preset = preset_for(options, engine)
        self.engine = engine
        self.options = options
        self.gain = options.volume * preset.gain
        self.rate = engine.sample_rate
        self._pauses = {
            "sentence": settings.text.sentence_pause_s * preset.pause_scale,
            "clause": settings.text.clause_pause_s * preset.pause_scale,
            "none": 0.0,
        }

    def config(self, segment: Segment) -> SynthesisConfig:
        return config_for(self.options, self.engine, segment)

    def pause(self, segment: Segment, last: bool) -> np.ndarray:
        return np.zeros(int(round(pause_after(segment, self._pauses, last) * self.rate)), dtype=np.float32)


@dataclass
class Spoken:
    """One segment's audio (gain applied, at the engine's rate), the engine's marks for it
    (relative to its start), and the pause after it."""

    segment: Segment
    speech: np.ndarray
    marks: list
    pause: np.ndarray


def spoken(engine: Engine, segments: list[Segment], voicing: Voicing, ends_job: bool,
           should_stop: Callable[[], bool] | None = None, batcher=None, first_index: int = 0):
    """Speak segments in order, one `Spoken` each. The last segment of the job gets only an SSML
    break after it; a segment with nothing speakable yields silence and no marks.

    With a batcher, up to a batch of the next segments are in flight at once, so a long job fills
    batches on its own and shares them with whatever else is waiting.
    """
    total = len(segments)
    in_flight: deque = deque()
    submitted = 0

    def next_audio(segment: Segment):
        nonlocal submitted
        if batcher is None:
            return engine.synthesize(segment.text, voicing.config(segment))
        while submitted < total and len(in_flight) < batcher.max_batch:
            ahead = segments[submitted]
            in_flight.append(batcher.submit(ahead.text, voicing.config(ahead)))
            submitted += 1
        return in_flight.popleft().result()

    for index, segment in enumerate(segments):
        if should_stop and should_stop():
            raise Canceled()
        try:
            # A segment with no text is an SSML break alone: only its pause.
            audio = next_audio(segment) if segment.text else None
        except NothingToSay:
            # A segment with nothing speakable (e.g. only symbols the voice lacks).
            log.debug("segment %d has nothing to say", first_index + index)
            audio = None
        except EngineFault as exc:
            raise SynthesisError(exc.code, f"segment {first_index + index + 1}: {exc}") from None
        pause = voicing.pause(segment, ends_job and index == total - 1)
        if audio is None or not len(audio.samples):
            yield Spoken(segment, np.zeros(0, dtype=np.float32), [], pause)
        else:
            yield Spoken(segment, audio.samples * (voicing.gain * segment.volume), audio.marks, pause)


@dataclass
class ChunkResult:
    frames: int  # at the output rate
    speech_samples: int  # at the engine's rate; 0 when the chunk had nothing speakable
    audio_s: float


def speak_chunk(engine: Engine, chunk: Chunk, options: SynthesisOptions, settings: Settings, attempt: ChunkAttempt,
                ends_job: bool, should_stop: Callable[[], bool] | None = None, batcher=None) -> ChunkResult:
    """Speak one chunk of a planned job into an attempt's temporary files (the caller publishes
    them): its 16-bit PCM at the output rate, its length, mark entries (relative to the chunk's
    start) and loudness measurement, for the formats that stream in pieces the chunk encoded on
    its own, and for chunk 0 of a G.711 WAV job the header its stream starts with.

    With loudness on, the chunk is written at the gain its own measurement gives (what a stream
    plays); the assembler corrects each chunk to the whole job's gain (worker/loudness.py).

    Chunks end at segment boundaries, after the segment's pause, so a job's chunks laid end to
    end are the job spoken as one chunk, sample for sample at the engine's rate.
    """
    voicing = Voicing(engine, options, settings)
    out_rate = options.sample_rate or voicing.rate
    target = loudness_target(options)
    found: list[dict] = []
    speech = 0
    audio = Resampled(voicing.rate, out_rate, telephone=options.format in TELEPHONE_FORMATS)
    position = 0
    for part in spoken(engine, chunk.segments, voicing, ends_job=ends_job, should_stop=should_stop,
                       batcher=batcher, first_index=chunk.first):
        start_ms = position * 1000.0 / voicing.rate
        if len(part.speech):
            audio.write(part.speech)
            position += len(part.speech)
        found.extend(mark_entries(part.segment, part.marks, start_ms, position * 1000.0 / voicing.rate))
        if len(part.pause):
            audio.write(part.pause)
            position += len(part.pause)
        speech += len(part.speech)
    samples = audio.finish()
    meta = {"frames": len(samples), "speech_samples": speech, "marks": found}
    if target is not None:
        # Measured before any gain or clipping, so the assembler can gate it with the others.
        measured = loudness.measure(samples, out_rate)
        gain = loudness.gain_db(target, loudness.integrated(measured.blocks), measured.true_peak_db,
                                TRUE_PEAK_CEILING_DBTP)
        samples = samples * np.float32(loudness.factor(gain))
        meta["loudness"] = {"blocks": measured.blocks, "gain_db": gain,
                            "true_peak_db": measured.true_peak_db if math.isfinite(measured.true_peak_db) else None}
    pcm_path = attempt.temp(PCM)
    frames = write_pcm(pcm_path, samples, out_rate)
    attempt.temp(META).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    if attempt.piece is not None:
        transcode([pcm_path], attempt.piece, STREAM_PIECES[options.format], out_rate)
    header = attempt.temp(STREAM_HEADER_KIND)
    if header is not None:
        header.write_bytes(stream_header(options.format, out_rate))
    return ChunkResult(frames=frames, speech_samples=speech, audio_s=frames / out_rate)
