"""A job's steps, whoever orders them: check its options, plan it, speak a chunk into its chunk
files, assemble the file. The cluster orders them through Redis (worker/runner.py: any worker
speaks any chunk); one machine (`voxq synth`, the benchmarks) in this process, chunk after chunk
(`Pipeline.render`). Both run exactly these steps, so they make the same audio."""
from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Callable

from shared import plan
from shared.chunk_files import ChunkAttempt, ChunkFiles
from shared.config import Settings
from shared.jobs import AudioResult
from shared.options import SynthesisOptions, loudness_target
from shared.plan import Chunk
from shared.storage import Storage
from shared.text.segmenter import Segment
from worker import assembly
from worker.engines.base import Engine
from worker.synthesizer import ChunkResult, PieceSink, SynthesisError, Voicing, speak_chunk


class Pipeline:
    def __init__(self, engine: Engine, settings: Settings, batcher=None):
        self.engine = engine
        self.settings = settings
        self.batcher = batcher
        # Without a batcher the engine is called directly, and a runtime such as LiteRT's
        # interpreter is not thread-safe: under a threads pool, chunks take turns.
        self._engine_lock = threading.Lock() if batcher is None else contextlib.nullcontext()

    def check(self, options: SynthesisOptions) -> None:
        """Whether this engine can speak with these options (the API checked them against every
        live engine; this one is the engine that will speak). SynthesisError if not."""
        problem = plan.check_options(options, self.engine.emotions, [v.name for v in self.engine.voices])
        if problem:
            raise SynthesisError.of(problem)

    def plan(self, text: str, text_type: str = "text", lexicons=(),
             should_stop: Callable[[], bool] | None = None) -> list[Segment]:
        try:
            return plan.segments(text, self.settings, text_type, lexicons, should_stop)
        except plan.PlanError as exc:
            raise SynthesisError.of(exc.problem) from None

    def head(self, text: str, text_type: str = "text", lexicons=(),
             should_stop: Callable[[], bool] | None = None) -> plan.Head:
        """The plan of the text's first sentence, to speak while the rest is planned."""
        try:
            return plan.head(text, self.settings, text_type, lexicons, should_stop)
        except plan.PlanError as exc:
            raise SynthesisError.of(exc.problem) from None

    def rest(self, text: str, first: plan.Head, text_type: str = "text", lexicons=(),
             should_stop: Callable[[], bool] | None = None) -> list[Segment]:
        try:
            return plan.rest(text, first, self.settings, text_type, lexicons, should_stop)
        except plan.PlanError as exc:
            raise SynthesisError.of(exc.problem) from None

    def chunks(self, segments: list[Segment], options: SynthesisOptions, first_at_most: int | None = None,
               whole: bool = False) -> list[Chunk]:
        return plan.chunks(segments, options, self.settings, first_at_most, whole)

    def speak(self, files: ChunkFiles, chunk: Chunk, index: int, total: int, options: SynthesisOptions,
              should_stop: Callable[[], bool] | None = None, live: PieceSink | None = None) -> ChunkResult:
        """Speak chunk `index` of `total` and publish its files (or leave none behind); with
        `live`, its stream's bytes go there too as they are made."""
        attempt = files.attempt(index)
        spoken = self.speak_into(attempt, chunk, options, index == total - 1, should_stop, live)
        attempt.publish()
        return spoken

    def speak_into(self, attempt: ChunkAttempt, chunk: Chunk, options: SynthesisOptions, ends_job: bool,
                   should_stop: Callable[[], bool] | None = None, live: PieceSink | None = None) -> ChunkResult:
        """Speak a chunk into an attempt's temporary files, for the caller to publish (or none,
        if it fails)."""
        try:
            with self._engine_lock:
                return speak_chunk(self.engine, chunk, options, self.settings, attempt, ends_job=ends_job,
                                   should_stop=should_stop, batcher=self.batcher, live=live)
        except BaseException:
            attempt.discard()
            raise

    def assemble(self, files: ChunkFiles, total: int, options: SynthesisOptions, audio_path: Path,
                 marks_path: Path | None) -> AudioResult:
        """The job's file (and marks) from its landed chunks, published by atomic rename."""
        out_rate = options.sample_rate or self.engine.sample_rate
        temp_audio = files.storage.temp_path(audio_path)
        temp_marks = files.storage.temp_path(marks_path) if marks_path else None
        try:
            result = assembly.assemble(files, total, out_rate, temp_audio, temp_marks, loudness_target(options))
        except BaseException:
            for temp in (temp_audio, temp_marks):
                if temp is not None:
                    temp.unlink(missing_ok=True)
            raise
        if temp_marks:
            Storage.publish(temp_marks, marks_path)
        Storage.publish(temp_audio, audio_path)
        return result

    def warm_up(self) -> None:
        """One small job through every step, in a scratch folder, before the first task: the
        first call of each step pays for loading dictionaries (jieba's, pypinyin's) and for the
        runtime's allocations, which would otherwise land on the first user's job (bench latency
        measures a fresh worker's first job against its tenth)."""
        options = SynthesisOptions(format="wav")
        self.plan(WARM_UP_TEXT)  # the dictionaries and normalisers, without speaking it all
        segments = self.plan(WARM_UP_SPOKEN)
        with tempfile.TemporaryDirectory(prefix=".voxq-warm-up-") as folder:
            self.render(segments, options, Path(folder) / "warm-up.wav")
        # A job's first segment is spoken in pieces, with a quick first piece (its own shape).
        config = Voicing(self.engine, options, self.settings).config(segments[0])
        with self._engine_lock:
            for _ in self.engine.synthesize_pieces(segments[0].text, config):
                pass

    def render(self, segments: list[Segment], options: SynthesisOptions, out_path: str | os.PathLike,
               marks_path: str | os.PathLike | None = None,
               should_stop: Callable[[], bool] | None = None) -> AudioResult:
        """A planned job on this machine: its chunks spoken one after the other into a scratch
        folder beside the output, then assembled, as the cluster does (loudness measured over the
        whole job, memory bounded however long the text)."""
        out_path = Path(out_path)
        chunks = self.chunks(segments, options)
        with tempfile.TemporaryDirectory(prefix=".voxq-", dir=out_path.parent) as folder:
            files = ChunkFiles(Storage(folder), uuid.uuid4().hex, options.format)
            for index, chunk in enumerate(chunks):
                self.speak(files, chunk, index, len(chunks), options, should_stop)
            return self.assemble(files, len(chunks), options, out_path, Path(marks_path) if marks_path else None)


# What a worker says to itself before its first task: numbers, a date, a time, money, a percentage
# and clauses, so every dictionary and normaliser the plan uses is loaded.
WARM_UP_TEXT = "您好，您的订单已于2024年3月15日10:30发货，金额¥12.5元，优惠50%。请注意查收！"
# ... and what it speaks: long enough for a quick first piece and the engine's usual shapes.
WARM_UP_SPOKEN = "您好，欢迎致电。"


def speak(engine: Engine, text: str, options: SynthesisOptions, out_path: str | os.PathLike, settings: Settings,
          marks_path: str | os.PathLike | None = None, text_type: str = "text", lexicons=()) -> AudioResult:
    """Check, plan and render `text` on this machine in one call (the CLI's and the benchmarks' path)."""
    pipeline = Pipeline(engine, settings)
    pipeline.check(options)
    return pipeline.render(pipeline.plan(text, text_type, lexicons), options, out_path, marks_path)
