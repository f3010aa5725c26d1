"""A job on the workers, chunk by chunk: the first task plans the job and speaks its first chunk;
every chunk task speaks one chunk; whoever lands the last chunk assembles the file and records
the result. Any worker runs any chunk, and a chunk can run twice without harm."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from shared.chunk_files import META, PCM, ChunkAttempt, ChunkFiles
from shared.config import Settings
from shared.jobs import TERMINAL, JobRecord
from shared.plan import Canceled, Chunk, chunk_seconds
from shared.storage import Storage
from shared.store import Store, Transient
from shared.text.lexicon import LexiconError, resolve
from worker import metrics
from worker.cache import ResultCache, cache_key
from worker.pipeline import Pipeline
from worker.synthesizer import SynthesisError

log = logging.getLogger(__name__)

# Speaking a long text's first chunk before its plan is saved leaves streams and progress without
# the job's chunk count for that time; off until they can show a job being planned (the head is
# still planned first, and the rest is planned in well under the first chunk's duration).
EARLY_FIRST_CHUNK = False


class Runner:
    def __init__(self, settings: Settings, store: Store, storage: Storage, engine,
                 notify: Callable[[str], object], publish: Callable[[str, int, str, str, int], None], batcher=None,
                 publish_job: Callable[[JobRecord], None] | None = None):
        self.settings = settings
        self.store = store
        self.jobs = store.jobs
        self.storage = storage
        self.engine = engine
        self.pipeline = Pipeline(engine, settings, batcher)
        # Called with the job ID when a job ends here; it queues the webhook (and never raises).
        self.notify = notify
        # Called with (job ID, chunk index, owner, queue, time limit) for each chunk the dispatch
        # hands out.
        self.publish = publish
        # Called with a job whose first message was lost, to send its first task again
        # (shared/tasks.py, send_first_task); None: nothing is re-sent.
        self.publish_job = publish_job
        self.cache = ResultCache(store, storage, settings.jobs.result_ttl_s)

    # the job's first task
    def run(self, job_id: str, fresh: bool = False, counted: "Counted | None" = None) -> str:
        """Plan the job and speak its first chunk; return its status after that (or why nothing
        was done). `fresh`: this message was sent, not handed back by the broker (a redelivery
        after a worker died) nor retried by Celery. `counted`: what this delivery of the message
        has counted already, when this is its step run again after a Redis outage."""
        counted = counted if counted is not None else Counted()
        jobs = self.jobs
        record = jobs.get(job_id)
        if record is None:
            return "missing"
        if record.status in TERMINAL:
            # A redelivery of a job that already ended (or was canceled): nothing to do twice.
            return "skipped"
        if fresh and not jobs.mark_running(job_id, only_queued=True):
            # A second first task of a job a worker has (the redispatch re-sent it while the first
            # was late, not lost; or both copies arrived at once, and the other took it): that
            # worker plans and speaks it. One that dies on it gives its message back redelivered,
            # and that one runs again. Taken from `queued` in one step, so one copy wins.
            status = jobs.status(job_id)
            if status == "running":
                log.info("job %s: a duplicate first task, skipped (the job is running)", job_id)
                return "skipped"
            return "skipped" if status else "missing"
        jobs.mark(job_id, "picked_up")
        if counted.job is None:
            counted.job = jobs.start_attempt(job_id)
        attempts = counted.job
        if attempts > self.settings.jobs.max_attempts:
            return self._fail(record, "worker_lost",
                              f"the job was interrupted {attempts - 1} times (a worker died while planning it)")
        if not fresh and not jobs.mark_running(job_id):
            return jobs.status(job_id) or "missing"
        text = jobs.text(job_id)
        if text is None:
            return self._fail(record, "text_expired", "the job's text is no longer stored")
        log.info("job %s started: %d chars, sha256 %s, attempt %d",
                 job_id, len(text), record.text_sha256[:12], attempts)
        options = record.options
        stopped = self._stopped(job_id)
        early = None
        try:
            self.pipeline.check(options)
            # The lexicons as they are now: the cache key has their hashes, so an edit since
            # submission is what is spoken, and never answered with older audio.
            lexicons = resolve(record.lexicons, self.store.lexicons.get_many(record.owner, record.lexicons))
            first = self.pipeline.head(text, record.text_type, lexicons, should_stop=stopped)
            jobs.mark(job_id, "planned")
            if EARLY_FIRST_CHUNK and first.end < len(text) and self.store.chunks.layout(job_id)[0] is None:
                # A long text: its first chunk is spoken before the rest is planned (a cancel
                # stops either), so planning the whole text never delays the first audio.
                early = self._speak_early(record, self.pipeline.chunks(first.segments, options)[0], counted)
                if isinstance(early, str):
                    return early
            segments = first.segments + self.pipeline.rest(text, first, record.text_type, lexicons, should_stop=stopped)
        except Canceled:
            log.info("job %s canceled while it was planned", job_id)
            self._discard(early)
            return jobs.status(job_id) or "canceled"
        except SynthesisError as exc:
            self._discard(early)
            return self._fail(record, exc.code, str(exc))
        except LexiconError as exc:
            return self._fail(record, "unknown_lexicon", str(exc))
        key = cache_key(segments, options, self.engine.name, self.engine.model_version, lexicons.hashes)
        if self._reuse(record, key, len(segments)):
            if early is not None:
                early.attempt.discard()
                self.store.pieces.delete(job_id)  # its listeners finish from the cached file
            return "succeeded"
        chunks = self.pipeline.chunks(segments, options, len(early.chunk.segments) if early else None,
                                      whole=record.live_session is not None)
        queue = self.store.workers.queue_for(record.priority, self.settings.jobs.heartbeat_ttl_s)
        # Each chunk with the audio it should make: its task's hang bound (JobSettings.hang_bound_s).
        encoded = [dict(chunk.encode(), expected_s=round(chunk_seconds(chunk, options.speed, self.settings), 2))
                   for chunk in chunks]
        if self.store.chunks.save_plan(job_id, record.owner, encoded, len(segments),
                                       options.sample_rate or self.engine.sample_rate, queue, key, time.time()):
            log.info("job %s planned: %d segments in %d chunk(s)", job_id, len(segments), len(chunks))
        self._dispatch(record.owner)
        return self._speak(record, 0, counted, early)

    # every later chunk
    def run_chunk(self, job_id: str, index: int, owner: str, counted: "Counted | None" = None) -> str:
        record = self.jobs.get(job_id)
        if record is None or record.status in TERMINAL:
            # Its job ended (or was deleted) since the chunk was dispatched.
            self._let_go(job_id, owner, index)
            return "skipped" if record else "missing"
        if record.status == "queued":
            self.jobs.mark_running(job_id)
        return self._speak(record, index, counted if counted is not None else Counted())

    def _speak(self, record: JobRecord, index: int, counted: "Counted", early: "Early | None" = None) -> str:
        job_id, owner, options = record.id, record.owner, record.options
        chunks = self.store.chunks
        total, out_rate, key = chunks.layout(job_id)
        spec = chunks.chunk(job_id, index)
        if total is None or spec is None:
            # The job ended (and its plan went) since it was read.
            self._discard(early)
            self._let_go(job_id, owner, index)
            return "skipped"
        files = ChunkFiles(self.storage, job_id, options.format)
        if not chunks.has_landed(job_id, index):
            if early is None:
                early = self._speak_now(record, files, Chunk.decode(spec), index, total, counted)
                if isinstance(early, str):
                    return early
            if not chunks.open_to(job_id, index):
                # Landed meanwhile by another attempt (this worker was paused, or slow), or the
                # job ended: the first to land wins, and this audio goes.
                return self._superseded(record, files, index, early)
            published_at = time.time()  # before the files appear: the API may stream them at once
            if not early.attempt.publish():
                return self._superseded(record, files, index, None)
            live = early.live
            if self.jobs.status(job_id) == "canceled":
                # Canceled while this chunk was finishing. The API removes what landed before
                # its cancel; this removes what landed after (it checks after publishing).
                self._let_go(job_id, owner, index)
                return "canceled"
            new, done, total = chunks.land(job_id, owner, index, len(early.chunk.segments))
            if new is None:
                # The job ended between the check and the landing (another attempt finished
                # it): what this attempt published would be left beside the finished file.
                return self._superseded(record, files, index, None, published=True)
            if index == 0:
                if live.at == 0:  # a format that does not stream in pieces: its first audio is this
                    live.first_audio(published_at)
                # Its files are there now: a stream reading the pieces goes on from them.
                self.store.pieces.delete(job_id)
        else:
            self._discard(early)
            new, done, total = chunks.land(job_id, owner, index, 0)  # a redelivery: only the bookkeeping
            if new is None:
                return self.jobs.status(job_id) or "missing"
        self._dispatch(owner)
        if done == total and self.jobs.status(job_id) == "running":
            return self._assemble(record, files, total, key)
        return "running"

    def _superseded(self, record: JobRecord, files: ChunkFiles, index: int, early: "Early | None",
                    published: bool = False) -> str:
        """This attempt at chunk `index` lost: another landed it first, or the job ended. Its
        audio goes (and what it published, when the job ended before it could land), and no
        counter moves; a job still running goes on as the winner left it."""
        job_id, owner = record.id, record.owner
        self._discard(early)
        status = self.jobs.status(job_id)
        if status == "running":
            if not self.store.chunks.has_landed(job_id, index):
                # Its files went without the chunk landing (never expected): landing it now would
                # count audio that is not there; the dispatch hands it out again after chunk_timeout_s.
                log.warning("job %s: chunk %d lost its temporaries before landing", job_id, index)
                return "running"
            log.info("job %s: chunk %d had landed already; this attempt's audio is discarded", job_id, index)
            _, done, total = self.store.chunks.land(job_id, owner, index, 0)
            self._dispatch(owner)
            _, _, key = self.store.chunks.layout(job_id)
            if done == total and self.jobs.status(job_id) == "running":
                return self._assemble(record, files, total, key)
            return "running"
        log.info("job %s is %s: chunk %d's late attempt is discarded", job_id, status or "gone", index)
        if published and status == "succeeded":
            # Assembly has removed the chunks' PCM and metadata; these came after it.
            files.delete_chunk(index, (PCM, META))
        if status in (None, "canceled", "failed"):
            self._let_go(job_id, owner, index)
        return "skipped"

    def _speak_early(self, record: JobRecord, chunk: Chunk, counted: "Counted") -> "Early | str":
        """The first chunk spoken before the job is fully planned (so not published yet)."""
        return self._speak_now(record, ChunkFiles(self.storage, record.id, record.options.format), chunk, 0, None,
                               counted)

    def _speak_now(self, record: JobRecord, files: ChunkFiles, chunk: Chunk, index: int,
                   total: int | None, counted: "Counted") -> "Early | str":
        """Speak chunk `index` (of `total`; None while the job is being planned, when the chunk
        is the first and not the last) into an attempt's files, for the caller to publish; or the
        job's status when it ended meanwhile."""
        job_id, owner = record.id, record.owner
        number, deliveries = self.store.chunks.start(job_id, index, rerun=index in counted.chunks)
        counted.chunks.add(index)
        shown_total = total if total is not None else "?"
        if deliveries > self.settings.jobs.max_attempts:
            return self._fail(record, "worker_lost",
                              f"chunk {index + 1} of {shown_total} was interrupted {deliveries - 1} times (a worker "
                              "died while speaking it each time)", index)
        started = time.perf_counter()
        # The first chunk goes out piece by piece as it is spoken: that is the job's first audio.
        live = LivePieces(self.store, record, number) if index == 0 else None
        # Its own temporaries: an earlier attempt may still be alive (a paused worker), and what
        # a dead one left goes when the job's chunks have all landed (_assemble) or it ends.
        attempt = files.attempt(index, number)
        try:
            spoken = self.pipeline.speak_into(attempt, chunk, record.options, total is not None and index == total - 1,
                                              should_stop=self._stopped(job_id), live=live)
        except Canceled:
            log.info("job %s canceled during chunk %d", job_id, index)
            self._let_go(job_id, owner, index)
            return self.jobs.status(job_id) or "canceled"
        except SynthesisError as exc:
            return self._fail(record, exc.code, str(exc), index)
        except Transient:
            raise  # Redis blinked: the task retries, and the chunk is spoken again
        except Exception as exc:  # noqa: BLE001 - a bug in an engine must end the job, not strand it running
            if not self.store.chunks.open_to(job_id, index):
                # Its chunk landed elsewhere (or the job ended) while this attempt was paused, and
                # its temporaries went with that: no fault of the job's.
                log.info("job %s: chunk %d's attempt lost its files to the attempt that landed it (%s)",
                         job_id, index, exc.__class__.__name__)
                return self._superseded(record, files, index, None)
            storage = self.storage.failure(exc)
            if storage is not None:
                log.warning("job %s: chunk %d failed: %s (%s)", job_id, index, storage, exc.__class__.__name__)
                return self._fail(record, "storage_error", _storage_message(storage), index)
            log.exception("job %s: chunk %d failed", job_id, index)
            return self._fail(record, "engine_error", f"synthesis failed ({exc.__class__.__name__})", index)
        metrics.observe_synthesis(self.engine.name, time.perf_counter() - started, spoken.audio_s)
        return Early(chunk, attempt, live)

    @staticmethod
    def _discard(early: "Early | None") -> None:
        if early is not None and not isinstance(early, str):
            early.attempt.discard()

    def _stopped(self, job_id: str) -> Callable[[], bool]:
        """Asked between segments: whether the job stopped running (canceled, failed elsewhere)."""
        return lambda: self.jobs.status(job_id) != "running"

    def _assemble(self, record: JobRecord, files: ChunkFiles, total: int, key: str | None) -> str:
        job_id, options = record.id, record.options
        storage = self.storage
        files.clear_temp()
        try:
            result = self.pipeline.assemble(files, total, options, storage.audio_path(job_id, options.format),
                                            storage.marks_path(job_id) if options.marks else None)
        except SynthesisError as exc:
            return self._fail(record, exc.code, str(exc))
        except Exception as exc:  # noqa: BLE001 - the job must end, not stay running for ever
            if self.jobs.status(job_id) != "running":
                return self.jobs.status(job_id) or "missing"  # another attempt assembled it first
            problem = storage.failure(exc)
            if problem is not None:
                return self._fail(record, "storage_error", _storage_message(problem))
            log.exception("job %s: assembly failed", job_id)
            return self._fail(record, "engine_error", f"assembly failed ({exc.__class__.__name__})")
        if not self.jobs.succeed(job_id, result):
            status = self.jobs.status(job_id)
            if status in (None, "canceled"):
                # Canceled between the last chunk and here: the cancel wins, the files go.
                storage.delete(job_id)
            # Else another attempt assembled it first: the file is the same audio, and stays.
            return status or "canceled"
        # The PCM pieces are the file now; compressed pieces stay for streams still reading them,
        # until the retention sweep (worker/retention.py). Only once the success is on a replica:
        # a failover that lost it runs the last chunk again, and the assembly needs them then
        # (the sweep removes them later either way).
        if self.store.replicated():
            files.delete((PCM, META))
        else:
            log.warning("job %s: Redis replicas did not confirm its success in time; its chunk pieces "
                        "stay until the retention sweep", job_id)
        if key:
            self.cache.remember(key, job_id)
        log.info("job %s succeeded: %.2f s audio in %d chunk(s)", job_id, result.duration_s, total)
        metrics.job_finished("succeeded", self.jobs.get(job_id))
        self.notify(job_id)
        return "succeeded"

    def _dispatch(self, owner: str) -> None:
        jobs_settings = self.settings.jobs
        handed = self.store.chunks.dispatch(owner, jobs_settings.tenant_chunks_in_flight, time.time(),
                                            jobs_settings.chunk_timeout_s)
        for job_id, index, queue in handed:
            try:
                bound = jobs_settings.hang_bound_s(self.store.chunks.expected_s(job_id, index)
                                                   or self.settings.text.chunk_s)
                self.publish(job_id, index, owner, queue, bound)
            except Exception:  # noqa: BLE001 - a chunk not published is dispatched again after chunk_timeout_s
                log.exception("job %s: could not queue chunk %d", job_id, index)

    def redispatch(self) -> None:
        """Dispatch every tenant with chunks waiting or in flight: a chunk whose dispatcher died
        between claiming it and publishing it goes out again after chunk_timeout_s, even if its
        tenant sends nothing more (the heartbeat calls this, one worker at a time)."""
        for owner in self.store.chunks.owners():
            self._dispatch(owner)
        self._resend_lost()
        self._end_lapsed_sessions()

    def _end_lapsed_sessions(self) -> None:
        """End as failed every live session whose API process stopped renewing its lease (it died,
        or lost Redis for longer than the lease): its client saw the connection close, and the
        record says why (api/live_session.py)."""
        for session_id, owner in self.store.sessions.lapsed():
            if self.jobs.fail(session_id, "session_lost", "the API process serving this live session stopped "
                              "before the session ended; its connection was closed"):
                log.warning("live session %s (%s) ended: its API process stopped renewing it", session_id, owner)

    def _resend_lost(self) -> None:
        """Send again the first task of every job still queued chunk_timeout_s after it was
        accepted: its message was lost (a split brain's old master took it; a worker main killed
        before kombu recorded it unacknowledged), and nothing else would ever run the job. Once per
        chunk_timeout_s per job; a copy of a message that was only late is skipped (run)."""
        if self.publish_job is None:
            return
        due = self.jobs.due_queued(self.settings.jobs.chunk_timeout_s)
        for record in self.jobs.get_many(due):
            if record.status != "queued":
                continue
            try:
                self.publish_job(record)
                log.warning("job %s still queued after %d s: its first task is sent again",
                            record.id, self.settings.jobs.chunk_timeout_s)
            except Exception:  # noqa: BLE001 - still queued: the next redispatch sends it
                log.exception("job %s: could not send its first task again", record.id)

    def _let_go(self, job_id: str, owner: str, index: int) -> None:
        """Free a chunk's dispatch slot without it landing, and hand the slot on. A canceled (or
        deleted) job's chunk files go: what landed before the end is no use now."""
        self.store.chunks.release(job_id, owner, index)
        if self.jobs.status(job_id) in (None, "canceled", "failed"):
            # A failed job's chunks are no use either, and on a full disk they keep it full.
            self._remove_chunks(job_id)
        self._dispatch(owner)

    def _remove_chunks(self, job_id: str) -> None:
        """Every chunk file of an ended job, and every attempt's temporaries."""
        files = ChunkFiles(self.storage, job_id)
        files.delete()
        files.clear_temp()

    def _fail(self, record: JobRecord, code: str, message: str, chunk: int | None = None) -> str:
        """End the job as failed (from the planning task, or from `chunk`, whose slot goes)."""
        failed = self.jobs.fail(record.id, code, message)
        if chunk is not None:
            self._let_go(record.id, record.owner, chunk)
        elif failed:
            self._remove_chunks(record.id)
        if failed:
            log.info("job %s failed: %s", record.id, code)
            metrics.job_finished("failed", self.jobs.get(record.id))
            self.notify(record.id)
            return "failed"
        return "skipped"  # it had ended already (another chunk failed it, or it was canceled)

    def _reuse(self, record: JobRecord, key: str, segments: int) -> bool:
        job_id = record.id
        source = self.cache.source(key, job_id)
        if source is None or not self.cache.copy(source, job_id, record.options.marks):
            return False
        result = source.result.model_copy(update={"marks": record.options.marks})
        self.jobs.set_progress(job_id, segments, segments)
        if not self.jobs.succeed(job_id, result, cache_hit=True):
            self.storage.delete(job_id)
            return True
        metrics.CACHE_HITS.inc()
        metrics.job_finished("succeeded", self.jobs.get(job_id))
        log.info("job %s served from the cache (job %s)", job_id, source.id)
        self.notify(job_id)
        return True


def _storage_message(problem: str) -> str:
    return f"{problem}; its chunks are removed, submit it again once there is space"


@dataclass
class Counted:
    """What one delivery of a task's message has counted toward the attempt bound (max_attempts),
    kept by worker/tasks.py across the runs of its step. A step run again after a Redis outage is
    this live worker going on, not a delivery after a worker died: were each run counted, a
    failover's refused writes (one for each pooled connection still on the old master, each a run
    again), with the copy of the message the broker hands back as the consumer reconnects, would
    fail a job `worker_lost` although no worker died."""

    job: int | None = None  # the job's count of deliveries, this one included, once it counted itself
    chunks: set[int] = field(default_factory=set)  # the chunks whose runs this delivery has counted


@dataclass
class Early:
    """A chunk spoken into an attempt's files, not yet published."""

    chunk: Chunk
    attempt: ChunkAttempt
    live: "LivePieces | None"


class LivePieces:
    """A job's first chunk, piece by piece, into its piece stream (shared/store/pieces.py), timing
    the job's first samples and first audio as the first piece goes out."""

    def __init__(self, store: Store, record: JobRecord, attempt: int):
        self.store = store
        self.record = record
        self.attempt = attempt
        self.at = 0  # bytes sent so far

    def start(self, rate: int, head: bytes) -> None:
        self.store.pieces.start(self.record.id, self.attempt, rate, head)

    def add(self, data: bytes) -> None:
        first = self.at == 0
        if first:
            self.store.jobs.mark(self.record.id, "first_samples")
            # Timed as the write starts: the API may read the piece (and stamp its first byte)
            # before this worker's write returns.
            visible_at = time.time()
        self.store.pieces.add(self.record.id, self.attempt, self.at, data)
        self.at += len(data)
        if first:
            self.first_audio(visible_at)

    def end(self) -> None:
        self.store.pieces.end(self.record.id, self.attempt, self.at)

    def first_audio(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        jobs = self.store.jobs
        if self.at == 0:
            jobs.mark(self.record.id, "first_samples", now)  # no-op when it was marked already
        accepted = self.record.timings.get("accepted")
        if jobs.mark(self.record.id, "first_audio", now) and accepted is not None:
            metrics.FIRST_AUDIO_SECONDS.observe(max(0.0, now - accepted))
