"""One job, start to finish, on a worker: claim it, synthesize or reuse, publish, record."""
from __future__ import annotations

import contextlib
import logging
import threading
import time

from shared.config import Settings
from shared.jobs import TERMINAL
from shared.jobstore import JobStore
from shared.storage import Storage
from worker import metrics, synthesizer, webhooks
from worker.cache import cache_key

log = logging.getLogger(__name__)


class Runner:
    def __init__(self, settings: Settings, store: JobStore, storage: Storage, engine, batcher=None):
        self.settings = settings
        self.store = store
        self.storage = storage
        self.engine = engine
        self.batcher = batcher
        # Without a batcher the engine is called directly, and a runtime such as LiteRT's
        # interpreter is not thread-safe: under a threads pool, jobs take turns.
        self._engine_lock = threading.Lock() if batcher is None else contextlib.nullcontext()

    def run(self, job_id: str) -> str:
        """Run a job; return the status it ended in (or why nothing was done)."""
        status = self._run(job_id)
        if status in ("succeeded", "failed"):
            # At most one webhook per job, whoever asks; this never raises.
            webhooks.notify(self.store, job_id)
        return status

    def _run(self, job_id: str) -> str:
        record = self.store.get(job_id)
        if record is None:
            return "missing"
        if record.status in TERMINAL:
            # A redelivery of a job that already ended (or was canceled): nothing to do twice.
            return record.status
        attempts = self.store.start_attempt(job_id)
        if attempts > self.settings.max_attempts:
            self.store.fail(
                job_id, "worker_lost",
                f"the job was interrupted {attempts - 1} times (a worker died while running it)",
            )
            return "failed"
        if not self.store.mark_running(job_id):
            return self.store.status(job_id) or "missing"
        text = self.store.text(job_id)
        if text is None:
            self.store.fail(job_id, "text_expired", "the job's text is no longer stored")
            return "failed"
        log.info("job %s started: %d chars, sha256 %s, attempt %d",
                 job_id, len(text), record.text_sha256[:12], attempts)
        started = time.perf_counter()
        try:
            segments = synthesizer.plan(text, self.settings)
            synthesizer.check_options(record.options, self.engine)
        except synthesizer.SynthesisError as exc:
            self.store.fail(job_id, exc.code, str(exc))
            return "failed"
        options = record.options
        key = cache_key(segments, options, self.engine.name, self.engine.model_version)
        audio = self.storage.audio_path(job_id, options.format)
        marks = self.storage.marks_path(job_id) if options.marks else None
        if self._reuse(job_id, key, audio, marks):
            return "succeeded"

        self.store.set_progress(job_id, 0, len(segments))
        if attempts > 1:
            self.storage.clear_temp(job_id)
        temp_audio = self.storage.temp_path(audio)
        temp_marks = self.storage.temp_path(marks) if marks else None
        try:
            with self._engine_lock:
                result = synthesizer.render(
                    self.engine, text, options, temp_audio, self.settings,
                    marks_path=temp_marks,
                    on_progress=lambda done, total: self.store.set_progress(job_id, done, total),
                    should_stop=lambda: self.store.status(job_id) != "running",
                    segments=segments,
                    batcher=self.batcher,
                )
        except synthesizer.Canceled:
            log.info("job %s canceled mid-synthesis", job_id)
            return self.store.status(job_id) or "canceled"
        except synthesizer.SynthesisError as exc:
            self.store.fail(job_id, exc.code, str(exc))
            return "failed"
        if marks:
            self.storage.publish(temp_marks, marks)
        self.storage.publish(temp_audio, audio)
        payload = {
            "format": result.format,
            "sample_rate": result.sample_rate,
            "duration_s": result.duration_s,
            "bytes": result.bytes,
            "sha256": result.sha256,
            "marks": bool(marks),
        }
        if not self.store.succeed(job_id, payload):
            # Canceled between the last segment and here: the cancel wins, the files go.
            self.storage.delete(job_id)
            return self.store.status(job_id) or "canceled"
        self.store.redis.set(key, job_id, ex=self.settings.result_ttl_s)
        elapsed = time.perf_counter() - started
        metrics.observe_synthesis(self.engine.name, elapsed, result.duration_s)
        log.info("job %s succeeded: %.2f s audio in %.2f s (RTF %.3f)",
                 job_id, result.duration_s, elapsed, elapsed / max(result.duration_s, 1e-6))
        return "succeeded"

    def _reuse(self, job_id: str, key: str, audio, marks) -> bool:
        source_id = self.store.redis.get(key)
        if not source_id or source_id == job_id:
            return False
        source = self.store.get(source_id)
        if source is None or source.status != "succeeded" or not source.result:
            return False
        source_audio = self.storage.audio_path(source_id, source.options.format)
        source_marks = self.storage.marks_path(source_id)
        if not source_audio.is_file() or (marks and not source_marks.is_file()):
            return False
        if marks:
            self.storage.link_or_copy(source_marks, marks)
        self.storage.link_or_copy(source_audio, audio)
        payload = dict(source.result, marks=bool(marks))
        segments = source.progress.segments_total or 0
        self.store.set_progress(job_id, segments, segments)
        if not self.store.succeed(job_id, payload, cache_hit=True):
            self.storage.delete(job_id)
            return True
        metrics.CACHE_HITS.inc()
        log.info("job %s served from the cache (job %s)", job_id, source_id)
        return True
