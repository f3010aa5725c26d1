"""One job, start to finish, on a worker: claim it, synthesize or reuse, publish, record."""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Callable

from shared.config import Settings
from shared.jobs import TERMINAL
from shared.storage import Storage
from shared.store import Store, Transient
from shared.text.lexicon import LexiconError, resolve
from worker import metrics, synthesizer
from worker.cache import ResultCache, cache_key

log = logging.getLogger(__name__)


class Runner:
    def __init__(self, settings: Settings, store: Store, storage: Storage, engine,
                 notify: Callable[[str], object], batcher=None):
        self.settings = settings
        self.store = store
        self.jobs = store.jobs
        self.storage = storage
        self.engine = engine
        # Called with the job ID when a job ends here; it queues the webhook (and never raises).
        self.notify = notify
        self.batcher = batcher
        self.cache = ResultCache(store, storage, settings.jobs.result_ttl_s)
        # Without a batcher the engine is called directly, and a runtime such as LiteRT's
        # interpreter is not thread-safe: under a threads pool, jobs take turns.
        self._engine_lock = threading.Lock() if batcher is None else contextlib.nullcontext()

    def run(self, job_id: str) -> str:
        """Run a job; return the status it ended in (or why nothing was done)."""
        status = self._run(job_id)
        if status in ("succeeded", "failed"):
            # At most one webhook per job, whoever asks.
            self.notify(job_id)
        return status

    def _run(self, job_id: str) -> str:
        jobs = self.jobs
        record = jobs.get(job_id)
        if record is None:
            return "missing"
        if record.status in TERMINAL:
            # A redelivery of a job that already ended (or was canceled): nothing to do twice.
            return record.status
        attempts = jobs.start_attempt(job_id)
        if attempts > self.settings.jobs.max_attempts:
            jobs.fail(job_id, "worker_lost",
                      f"the job was interrupted {attempts - 1} times (a worker died while running it)")
            return "failed"
        if not jobs.mark_running(job_id):
            return jobs.status(job_id) or "missing"
        text = jobs.text(job_id)
        if text is None:
            jobs.fail(job_id, "text_expired", "the job's text is no longer stored")
            return "failed"
        log.info("job %s started: %d chars, sha256 %s, attempt %d",
                 job_id, len(text), record.text_sha256[:12], attempts)
        started = time.perf_counter()
        options = record.options
        try:
            # The one check of the options inside the worker (the API checked them against the
            # registered engines; this worker's engine is the one that will speak).
            synthesizer.check_options(options, self.engine)
            # The lexicons as they are now: the cache key has their hashes, so an edit since
            # submission is what is spoken, and never answered with older audio.
            lexicons = resolve(record.lexicons, self.store.lexicons.get_many(record.owner, record.lexicons))
            segments = synthesizer.plan(text, self.settings, record.text_type, lexicons)
        except synthesizer.SynthesisError as exc:
            jobs.fail(job_id, exc.code, str(exc))
            return "failed"
        except LexiconError as exc:
            jobs.fail(job_id, "unknown_lexicon", str(exc))
            return "failed"
        key = cache_key(segments, options, self.engine.name, self.engine.model_version, lexicons.hashes)
        if self._reuse(job_id, key, options.marks):
            return "succeeded"

        audio = self.storage.audio_path(job_id, options.format)
        marks = self.storage.marks_path(job_id) if options.marks else None
        jobs.set_progress(job_id, 0, len(segments))
        if attempts > 1:
            self.storage.clear_temp(job_id)
        temp_audio = self.storage.temp_path(audio)
        temp_marks = self.storage.temp_path(marks) if marks else None
        try:
            with self._engine_lock:
                result = synthesizer.render(
                    self.engine, segments, options, temp_audio, self.settings,
                    marks_path=temp_marks,
                    on_progress=lambda done, total: jobs.set_progress(job_id, done, total),
                    should_stop=lambda: jobs.status(job_id) != "running",
                    batcher=self.batcher,
                )
        except synthesizer.Canceled:
            log.info("job %s canceled mid-synthesis", job_id)
            return jobs.status(job_id) or "canceled"
        except synthesizer.SynthesisError as exc:
            jobs.fail(job_id, exc.code, str(exc))
            return "failed"
        except Transient:
            raise  # Redis blinked: the task retries, and the job resumes from its first segment
        except Exception as exc:  # noqa: BLE001 - a bug in an engine must end the job, not strand it running
            log.exception("job %s: synthesis failed", job_id)
            jobs.fail(job_id, "engine_error", f"synthesis failed ({exc.__class__.__name__})")
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
        if not jobs.succeed(job_id, payload):
            # Canceled between the last segment and here: the cancel wins, the files go.
            self.storage.delete(job_id)
            return jobs.status(job_id) or "canceled"
        self.cache.remember(key, job_id)
        elapsed = time.perf_counter() - started
        metrics.observe_synthesis(self.engine.name, elapsed, result.duration_s)
        log.info("job %s succeeded: %.2f s audio in %.2f s (RTF %.3f)",
                 job_id, result.duration_s, elapsed, elapsed / max(result.duration_s, 1e-6))
        return "succeeded"

    def _reuse(self, job_id: str, key: str, marks: bool) -> bool:
        source = self.cache.source(key, job_id)
        if source is None or not self.cache.copy(source, job_id, marks):
            return False
        payload = dict(source.result, marks=marks)
        segments = source.progress.segments_total or 0
        self.jobs.set_progress(job_id, segments, segments)
        if not self.jobs.succeed(job_id, payload, cache_hit=True):
            self.storage.delete(job_id)
            return True
        metrics.CACHE_HITS.inc()
        log.info("job %s served from the cache (job %s)", job_id, source.id)
        return True
