"""Long text to one audio file: normalise, split, synthesize segment by segment, stream to disk."""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from shared.config import Settings
from shared.options import (STREAM_PIECES, TELEPHONE_FORMATS, TRUE_PEAK_CEILING_DBTP, SynthesisOptions,
                            check_format_rate, loudness_target)
from shared.ssml import SsmlError
from shared.text import frontend
from shared.text.segmenter import Segment
from worker import loudness
from worker.audio import Resampled, stream_header, transcode, write_pcm
from worker.chunking import quick_start
from worker.emotions import PRESETS
from worker.engines.base import Engine, EngineFault, NothingToSay, SynthesisConfig
from worker.marks import entries as mark_entries

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
    loudness_lufs: float | None = None
    true_peak_dbtp: float | None = None


def plan(text: str, settings: Settings, text_type: str = "text", lexicons=(),
         should_stop: Callable[[], bool] | None = None) -> list[Segment]:
    """Check and split the text (SSML when text_type is "ssml"), with the lexicons applied;
    raise SynthesisError for text that cannot be spoken, Canceled when `should_stop` says so."""
    text = frontend.trim(text or "")
    if not text.strip():
        raise SynthesisError("empty_text", "text is empty", "text")
    limit = settings.limits.max_chars
    if len(text) > limit:
        raise SynthesisError("text_too_long", f"text has {len(text)} characters; the limit is {limit}", "text")
    try:
        # The API's rule, before planning: a text of emoji fails at once, not after normalising.
        if not frontend.speakable(text, ssml=text_type == "ssml", lexicons=lexicons):
            raise SynthesisError("nothing_to_say", frontend.NOTHING_TO_SAY, "text")
        segments = frontend.plan(
            text, ssml=text_type == "ssml", lexicons=lexicons,
            max_segment_chars=settings.text.max_segment_chars,
            sentence_pause_s=settings.text.sentence_pause_s, clause_pause_s=settings.text.clause_pause_s,
            should_stop=should_stop)
    except frontend.Interrupted:
        raise Canceled() from None
    except SsmlError as exc:
        raise SynthesisError(exc.code, str(exc), "text") from None
    if not any(segment.text for segment in segments):
        raise SynthesisError("nothing_to_say", "nothing to say: the text has no speakable characters", "text")
    return quick_start(segments)


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
            chunk = next_audio(segment) if segment.text else None
        except NothingToSay:
            # A segment with nothing speakable (e.g. only symbols the voice lacks).
            log.debug("segment %d has nothing to say", first_index + index)
            chunk = None
        except EngineFault as exc:
            raise SynthesisError(exc.code, f"segment {first_index + index + 1}: {exc}") from None
        pause = voicing.pause(segment, ends_job and index == total - 1)
        if chunk is None or not len(chunk.samples):
            yield Spoken(segment, np.zeros(0, dtype=np.float32), [], pause)
        else:
            yield Spoken(segment, chunk.samples * (voicing.gain * segment.volume), chunk.marks, pause)


def speak(engine: Engine, text: str, options: SynthesisOptions, out_path: str | os.PathLike, settings: Settings,
          marks_path: str | os.PathLike | None = None, text_type: str = "text", lexicons=()) -> SynthesisResult:
    """Check, plan and render `text` in one call, in one piece (the CLI's and the benchmarks' path)."""
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
    should_stop: Callable[[], bool] | None = None,
    batcher=None,
) -> SynthesisResult:
    """Synthesize a whole planned job, in one piece, into `out_path` (and its timing marks into
    `marks_path`). The options were checked (check_options) when the job was planned.

    It is the workers' way, on one machine: chunks into a scratch folder beside the output, then
    assembled (worker/assembly.py), so the loudness is measured over the whole job and memory
    stays bounded however long the text."""
    from worker import assembly, chunking  # assembly's loudness pass, chunking's plan: no cycle at import

    out_path = Path(out_path)
    out_rate = options.sample_rate or engine.sample_rate
    chunks = chunking.plan_chunks(segments, options, settings)
    try:
        with tempfile.TemporaryDirectory(prefix=".voxq-", dir=out_path.parent) as folder:
            pcm_paths, meta_paths = [], []
            first = 0
            for index, chunk in enumerate(chunks):
                pcm_paths.append(Path(folder) / f"{index}.pcm")
                meta_paths.append(Path(folder) / f"{index}.json")
                render_chunk(engine, chunk, options, settings, pcm_paths[-1], meta_paths[-1], None,
                             ends_job=index == len(chunks) - 1, first_index=first, should_stop=should_stop,
                             batcher=batcher)
                first += len(chunk)
            built = assembly.assemble_files(pcm_paths, meta_paths, options.format, out_rate, out_path,
                                            Path(marks_path) if marks_path else None, loudness_target(options))
            if built.speech_samples == 0:
                raise SynthesisError("nothing_to_say", "nothing to say: the text has no speakable characters", "text")
    except BaseException:
        out_path.unlink(missing_ok=True)
        if marks_path:
            Path(marks_path).unlink(missing_ok=True)
        raise
    return SynthesisResult(
        format=options.format,
        sample_rate=out_rate,
        duration_s=round(built.frames / out_rate, 3),
        bytes=built.bytes,
        sha256=built.sha256,
        segments=len(segments),
        loudness_lufs=built.loudness_lufs,
        true_peak_dbtp=built.true_peak_dbtp,
    )


@dataclass
class ChunkResult:
    frames: int  # at the output rate
    speech_samples: int  # at the engine's rate; 0 when the chunk had nothing speakable
    audio_s: float


def render_chunk(
    engine: Engine,
    segments: list[Segment],
    options: SynthesisOptions,
    settings: Settings,
    pcm_path: Path,
    meta_path: Path,
    piece_path: Path | None,
    ends_job: bool,
    first_index: int = 0,
    should_stop: Callable[[], bool] | None = None,
    batcher=None,
    header_path: Path | None = None,
) -> ChunkResult:
    """Speak one chunk of a planned job: its 16-bit PCM at the output rate into `pcm_path`, its
    length, mark entries (relative to the chunk's start) and loudness measurement into `meta_path`,
    for the other formats than wav and pcm the chunk encoded on its own into `piece_path` (what a
    stream sends), and with `header_path` the header a G.711 WAV stream starts with.

    With loudness on, the chunk is written at the gain its own measurement gives (what a stream
    plays); the assembler corrects each chunk to the whole job's gain (worker/loudness.py).

    Chunks end at segment boundaries, after the segment's pause, so the job's chunks laid end to
    end are what `render` gives for the whole job, sample for sample at the engine's rate.
    """
    voicing = Voicing(engine, options, settings)
    out_rate = options.sample_rate or voicing.rate
    target = loudness_target(options)
    found: list[dict] = []
    speech = 0
    try:
        audio = Resampled(voicing.rate, out_rate, telephone=options.format in TELEPHONE_FORMATS)
        position = 0
        for part in spoken(engine, segments, voicing, ends_job=ends_job, should_stop=should_stop,
                           batcher=batcher, first_index=first_index):
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
        frames = write_pcm(pcm_path, samples, out_rate)
        meta_path.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        if piece_path is not None:
            transcode([pcm_path], piece_path, STREAM_PIECES[options.format], out_rate)
        if header_path is not None:
            header_path.write_bytes(stream_header(options.format, out_rate))
    except BaseException:
        for path in (pcm_path, meta_path, piece_path, header_path):
            if path is not None:
                path.unlink(missing_ok=True)
        raise
    return ChunkResult(frames=frames, speech_samples=speech, audio_s=frames / out_rate)
