"""Dynamic batching: one inference thread groups the segments waiting right now, from one long
job or from many, into one padded batch, capped in size and in how long it waits."""
from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from worker.engines.base import SegmentAudio, SynthesisConfig

log = logging.getLogger(__name__)


@dataclass
class _Item:
    text: str
    config: SynthesisConfig
    future: Future = field(default_factory=Future)


class Batcher:
    def __init__(self, engine, max_batch: int = 16, max_wait_s: float = 0.01):
        self.engine = engine
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.batch_sizes: list[int] = []  # recent sizes, for metrics and tests
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="voxq-batcher", daemon=True)
        self._thread.start()

    def submit(self, text: str, config: SynthesisConfig) -> "Future[SegmentAudio]":
        item = _Item(text, config)
        self._queue.put(item)
        return item.future

    def _collect(self) -> list[_Item]:
        batch = [self._queue.get()]
        # Wait a little for company: a full batch costs about what one segment costs on a GPU.
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=max(0.0, remaining)) if remaining > 0
                             else self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._collect()
            self.batch_sizes = (self.batch_sizes + [len(batch)])[-1000:]
            log.debug("batch of %d segment(s)", len(batch))
            try:
                chunks = self.engine.synthesize_batch([(item.text, item.config) for item in batch])
            except Exception:
                # One bad segment (say, nothing speakable) must not fail its neighbours: redo alone.
                for item in batch:
                    try:
                        item.future.set_result(self.engine.synthesize_batch([(item.text, item.config)])[0])
                    except Exception as exc:  # handed to the waiting job, which decides
                        item.future.set_exception(exc)
                continue
            for item, chunk in zip(batch, chunks):
                item.future.set_result(chunk)
