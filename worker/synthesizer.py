"""Long text to one audio file: normalise, split, synthesize segment by segment, stream to disk."""
from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from shared.config import Settings
from shared.options import SynthesisOptions, check_format_rate
from shared.ssml import SsmlError
from shared.text import frontend
from shared.text.segmenter import Segment
from worker.assets import sha256_of
from worker.audio import AudioWriter
from worker.emotions import PRESETS
from worker.engines.base import Engine, EngineFault, NothingToSay, SynthesisConfig
from worker.marks import MarksWriter

log = logging.getLogger(__name__)


class SynthesisError(ValueError):
    """The request cannot be spoken; `code` is a stable machine-readable reason."""

    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.field = field


class Canceled(Exception):
    """The job was canceled between two segments."""


@dataclass
class SynthesisResult:
    format: str
    sample_rate: int
    duration_s: float
    bytes: int
    sha256: str
    segments: int


def plan(text: str, settings: Settings, text_type: str = "text", lexicons=()) -> list[Segment]:
    """Check and split the text (SSML when text_type is "ssml"), with the lexicons applied;
    raise SynthesisError for text that cannot be spoken."""
    if not text or not text.strip():
        raise SynthesisError("empty_text", "text is empty", "text")
    limit = settings.limits.max_chars
    if len(text) > limit:
        raise SynthesisError("text_too_long", f"text has {len(text)} characters; the limit is {limit}", "text")
    try:
        segments = frontend.plan(
            text, ssml=text_type == "ssml", lexicons=lexicons,
            max_segment_chars=settings.text.max_segment_chars,
            sentence_pause_s=settings.text.sentence_pause_s, clause_pause_s=settings.text.clause_pause_s)
    except SsmlError as exc:
        raise SynthesisError(exc.code, str(exc), "text") from None
    if not any(segment.text for segment in segments):
        raise SynthesisError("nothing_to_say", "nothing to say: the text has no speakable characters", "text")
    return segments


def check_options(options: SynthesisOptions, engine: Engine) -> None:
    """Whether this engine can speak with these options; SynthesisError if not. Once per job."""
    emotions = engine.emotions
    if options.emotion not in emotions:
        raise SynthesisError(
            "unknown_emotion", f"unknown emotion {options.emotion!r}; valid: {', '.join(emotions)}", "emotion"
        )
    voices = [v.name for v in engine.voices]
    if options.voice is not None and options.voice not in voices:
        raise SynthesisError("unknown_voice", f"unknown voice {options.voice!r}; valid: {', '.join(voices)}", "voice")
    problem = check_format_rate(options.format, options.sample_rate)
    if problem:
        raise SynthesisError("unsupported_sample_rate", problem, "sample_rate")


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


def speak(engine: Engine, text: str, options: SynthesisOptions, out_path: str | os.PathLike, settings: Settings,
          marks_path: str | os.PathLike | None = None, text_type: str = "text", lexicons=()) -> SynthesisResult:
    """Check, plan and render `text` in one call (the CLI's and the benchmarks' path)."""
    check_options(options, engine)
    return render(engine, plan(text, settings, text_type, lexicons), options, out_path, settings,
                  marks_path=marks_path)


def render(
    engine: Engine,
    segments: list[Segment],
    options: SynthesisOptions,
    out_path: str | os.PathLike,
    settings: Settings,
    marks_path: str | os.PathLike | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    batcher=None,
) -> SynthesisResult:
    """Synthesize planned `segments` into `out_path` (and their timing marks into `marks_path`).
    The options were checked (check_options) when the job was planned.

    With a batcher, up to a batch of the job's next segments are in flight at once, so a long
    job fills batches on its own and shares them with whatever else is waiting.
    """
    preset = preset_for(options, engine)
    gain = options.volume * preset.gain
    rate = engine.sample_rate
    pauses = {
        "sentence": settings.text.sentence_pause_s * preset.pause_scale,
        "clause": settings.text.clause_pause_s * preset.pause_scale,
        "none": 0.0,
    }
    out_path = Path(out_path)
    marks = MarksWriter(Path(marks_path) if marks_path else None)
    spoken = 0
    total = len(segments)
    in_flight: deque = deque()
    submitted = 0

    def next_chunk(index: int, segment: Segment):
        nonlocal submitted
        if batcher is None:
            return engine.synthesize(segment.text, config_for(options, engine, segment))
        while submitted < total and len(in_flight) < batcher.max_batch:
            ahead = segments[submitted]
            in_flight.append(batcher.submit(ahead.text, config_for(options, engine, ahead)))
            submitted += 1
        return in_flight.popleft().result()
    try:
        with AudioWriter(out_path, options.format, rate, options.sample_rate) as writer:
            position = 0
            for index, segment in enumerate(segments):
                if should_stop and should_stop():
                    raise Canceled()
                try:
                    chunk = next_chunk(index, segment)
                except NothingToSay:
                    # A segment with nothing speakable (e.g. only symbols the voice lacks).
                    log.debug("segment %d has nothing to say", index)
                    chunk = None
                except EngineFault as exc:
                    raise SynthesisError(exc.code, f"segment {index + 1}: {exc}") from None
                last = index == total - 1
                start_ms = position * 1000.0 / rate
                if chunk is not None and len(chunk.samples):
                    audio = chunk.samples * (gain * segment.volume)
                    spoken += len(audio)
                    position += len(audio)
                    writer.write(audio)
                marks.write(segment, chunk.marks if chunk is not None else [], start_ms, position * 1000.0 / rate)
                silence = np.zeros(int(round(pause_after(segment, pauses, last) * rate)), dtype=np.float32)
                if len(silence):
                    position += len(silence)
                    writer.write(silence)
                if on_progress:
                    on_progress(index + 1, total)
            if spoken == 0:
                raise SynthesisError("nothing_to_say", "nothing to say: the text has no speakable characters", "text")
            out_rate = writer.out_rate
        frames = writer.frames
    except BaseException:
        marks.close()
        out_path.unlink(missing_ok=True)
        if marks_path:
            Path(marks_path).unlink(missing_ok=True)
        raise
    marks.close()
    return SynthesisResult(
        format=options.format,
        sample_rate=out_rate,
        duration_s=round(frames / out_rate, 3),
        bytes=out_path.stat().st_size,
        sha256=sha256_of(out_path),
        segments=total,
    )
