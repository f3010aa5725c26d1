"""Segments to audio: how a job sounds (its voicing), each segment spoken in order, and one chunk of
a job written as its chunk files (shared/chunk_files.py)."""
from __future__ import annotations

import json
import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from shared.chunk_files import META, PCM, ChunkAttempt
from shared.config import Settings
from shared.options import (LIVE_KINDS, STREAM_HEADER_KIND, STREAM_PIECES, TELEPHONE_FORMATS, TRUE_PEAK_CEILING_DBTP,
                            SynthesisOptions, loudness_target)
from shared.plan import Canceled, Chunk, Problem
from shared.text.segmenter import Segment
from worker import loudness
from worker.audio import Resampled, g711, pcm16, stream_header, transcode, write_pcm
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
    """A segment's audio, or one piece of it (gain applied, at the engine's rate): the engine's
    marks for the segment (relative to its start) come with its first piece, the pause after it
    with its last (`last`)."""

    segment: Segment
    speech: np.ndarray
    marks: list
    pause: np.ndarray
    last: bool = True


def spoken(engine: Engine, segments: list[Segment], voicing: Voicing, ends_job: bool,
           should_stop: Callable[[], bool] | None = None, batcher=None, first_index: int = 0,
           pieces: bool = False):
    """Speak segments in order, one `Spoken` each (with `pieces`, one per piece of audio as the
    engine makes it). The last segment of the job gets only an SSML break after it; a segment with
    nothing speakable yields silence and no marks.

    With a batcher, up to a batch of the next segments are in flight at once, so a long job fills
    batches on its own and shares them with whatever else is waiting.
    """
    total = len(segments)
    in_flight: deque = deque()
    submitted = 0
    silent = np.zeros(0, dtype=np.float32)

    def audio_of(segment: Segment, index: int):
        nonlocal submitted
        if batcher is not None:
            while submitted < total and len(in_flight) < batcher.max_batch:
                ahead = segments[submitted]
                in_flight.append(batcher.submit(ahead.text, voicing.config(ahead)))
                submitted += 1
            return iter([in_flight.popleft().result()])
        if pieces:
            # Only the job's first segment is waited for by a listener: the later ones are made
            # while the earlier audio plays, so they go out in the engine's cheapest pieces.
            return engine.synthesize_pieces(segment.text, voicing.config(segment),
                                            quick_start=first_index + index == 0)
        return iter([engine.synthesize(segment.text, voicing.config(segment))])

    for index, segment in enumerate(segments):
        if should_stop and should_stop():
            raise Canceled()
        pause = voicing.pause(segment, ends_job and index == total - 1)
        made = []
        try:
            # A segment with no text is an SSML break alone: only its pause.
            for audio in audio_of(segment, index) if segment.text else ():
                if made and len(made[-1].speech):
                    yield made.pop()
                made.append(Spoken(segment, audio.samples * (voicing.gain * segment.volume), audio.marks,
                                   silent, last=False))
        except NothingToSay:
            # A segment with nothing speakable (e.g. only symbols the voice lacks).
            log.debug("segment %d has nothing to say", first_index + index)
        except EngineFault as exc:
            raise SynthesisError(exc.code, f"segment {first_index + index + 1}: {exc}") from None
        last = made[-1] if made else Spoken(segment, silent, [], silent)
        yield Spoken(segment, last.speech, last.marks, pause)


@dataclass
class ChunkResult:
    frames: int  # at the output rate
    speech_samples: int  # at the engine's rate; 0 when the chunk had nothing speakable
    audio_s: float


class PieceSink(Protocol):
    """Where a chunk spoken in pieces sends them as they are made (worker/runner.py's LivePieces)."""

    def start(self, rate: int, head: bytes) -> None: ...

    def add(self, data: bytes) -> None: ...

    def end(self) -> None: ...


# Where the voice speaks before any gain (the Baker voice: about R128's -23 LUFS). A chunk spoken
# in pieces cannot wait for its own measurement: it goes out at target minus this, and the
# assembler corrects it to the job's gain like any other chunk.
NOMINAL_LUFS = -23.0
MAX_PRESET_GAIN_DB = 12.0


def speak_chunk(engine: Engine, chunk: Chunk, options: SynthesisOptions, settings: Settings, attempt: ChunkAttempt,
                ends_job: bool, should_stop: Callable[[], bool] | None = None, batcher=None,
                live: PieceSink | None = None) -> ChunkResult:
    """Speak one chunk of a planned job into an attempt's temporary files (the caller publishes
    them): its 16-bit PCM at the output rate, its length, mark entries (relative to the chunk's
    start) and loudness measurement, for the formats that stream in pieces the chunk encoded on
    its own, and for chunk 0 of a G.711 WAV job the header its stream starts with.

    With loudness on, the chunk is written at the gain its own measurement gives (what a stream
    plays); the assembler corrects each chunk to the whole job's gain (worker/loudness.py). With
    `live` (and a stream kind in LIVE_KINDS), the chunk's stream bytes also go to `live` as the
    engine makes them, at a gain set before it speaks (NOMINAL_LUFS); they are the file's bytes.

    Chunks end at segment boundaries, after the segment's pause, so a job's chunks laid end to
    end are the job spoken as one chunk, sample for sample at the engine's rate.
    """
    voicing = Voicing(engine, options, settings)
    out_rate = options.sample_rate or voicing.rate
    target = loudness_target(options)
    kind = STREAM_PIECES.get(options.format)
    # With loudness on, the telephone's chunks keep their own measured gain (the line's level
    # matters more than the first 100 ms), so they go out a chunk at a time.
    live = live if kind in LIVE_KINDS and (target is None or options.format not in TELEPHONE_FORMATS) else None
    found: list[dict] = []
    speech = 0
    audio = Resampled(voicing.rate, out_rate, telephone=options.format in TELEPHONE_FORMATS)
    position = 0
    header = attempt.temp(STREAM_HEADER_KIND)
    head = stream_header(options.format, out_rate) if header is not None else b""
    preset = min(target - NOMINAL_LUFS, MAX_PRESET_GAIN_DB) if target is not None else 0.0
    pcm_out = open(attempt.temp(PCM), "wb") if live else None
    try:
        if live:
            live.start(out_rate, head)

        def emit(block: np.ndarray) -> None:
            if not len(block):
                return
            data = pcm16(block * np.float32(loudness.factor(preset)) if preset else block)
            pcm_out.write(data)
            live.add(data if kind == PCM else g711(data, kind))

        segment_start = 0
        marks: list = []
        for part in spoken(engine, chunk.segments, voicing, ends_job=ends_job, should_stop=should_stop,
                           batcher=batcher, first_index=chunk.first, pieces=live is not None):
            if len(part.speech):
                block = audio.write(part.speech)
                if live:
                    emit(block)
                position += len(part.speech)
                speech += len(part.speech)
            marks.extend(part.marks)
            if not part.last:
                continue
            found.extend(mark_entries(part.segment, marks, segment_start * 1000.0 / voicing.rate,
                                      position * 1000.0 / voicing.rate))
            marks = []
            if len(part.pause):
                block = audio.write(part.pause)
                if live:
                    emit(block)
                position += len(part.pause)
            segment_start = position
        if live:
            emit(audio.flush())
        samples = audio.finish()
        meta = {"frames": len(samples), "speech_samples": speech, "marks": found}
        if target is not None:
            # Measured before any gain or clipping, so the assembler can gate it with the others.
            measured = loudness.measure(samples, out_rate)
            gain = preset if live else loudness.gain_db(target, loudness.integrated(measured.blocks),
                                                        measured.true_peak_db, TRUE_PEAK_CEILING_DBTP)
            meta["loudness"] = {"blocks": measured.blocks, "gain_db": gain,
                                "true_peak_db": measured.true_peak_db if math.isfinite(measured.true_peak_db) else None}
            samples = samples * np.float32(loudness.factor(gain))
    finally:
        if pcm_out is not None:
            pcm_out.close()
    frames = len(samples) if live else write_pcm(attempt.temp(PCM), samples, out_rate)
    attempt.temp(META).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    if attempt.piece is not None:
        transcode([attempt.temp(PCM)], attempt.piece, STREAM_PIECES[options.format], out_rate)
    if header is not None:
        header.write_bytes(head)
    if live:
        live.end()
    return ChunkResult(frames=frames, speech_samples=speech, audio_s=frames / out_rate)
