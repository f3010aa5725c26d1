"""The result cache: identical requests (same speech, same engine and model) reuse earlier audio."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging

from shared.jobs import JobRecord
from shared.options import SynthesisOptions
from shared.storage import Storage
from shared.store import Store
from shared.text.segmenter import Segment

log = logging.getLogger(__name__)


def cache_key(segments: list[Segment], options: SynthesisOptions, engine_name: str, model_version: str,
              lexicons: list[str] = ()) -> str:
    # Keyed on the normalised segments, not the raw text: "3%" and "百分之三" sound the same.
    # Every field of a segment counts (SSML breaks, prosody, fixed readings), and so does each
    # lexicon's name and content hash: an edited lexicon never answers with the old audio.
    payload = {
        "segments": [dataclasses.asdict(s) for s in segments],
        "lexicons": list(lexicons),
        "options": options.model_dump(mode="json"),
        "engine": engine_name,
        "model": model_version,
    }
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


class ResultCache:
    def __init__(self, store: Store, storage: Storage, ttl_s: int):
        self.store = store
        self.storage = storage
        self.ttl_s = ttl_s

    def source(self, key: str, job_id: str) -> JobRecord | None:
        """An earlier succeeded job whose files answer `key` and still exist, or None."""
        source_id = self.store.cache.source(key)
        if not source_id or source_id == job_id:
            return None
        source = self.store.jobs.get(source_id)
        if source is None or source.status != "succeeded" or not source.result:
            return None
        if not self.storage.audio_path(source_id, source.options.format).is_file():
            return None
        return source

    def copy(self, source: JobRecord, job_id: str, marks: bool) -> bool:
        """Give `job_id` its own copy of the source's files; False if the marks are missing."""
        source_marks = self.storage.marks_path(source.id)
        if marks and not source_marks.is_file():
            return False
        if marks:
            self.storage.link_or_copy(source_marks, self.storage.marks_path(job_id))
        self.storage.link_or_copy(self.storage.audio_path(source.id, source.options.format),
                                  self.storage.audio_path(job_id, source.options.format))
        return True

    def remember(self, key: str, job_id: str) -> None:
        self.store.cache.remember(key, job_id, self.ttl_s)
