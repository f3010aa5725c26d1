"""The result cache: identical requests (same speech, same engine and model) reuse earlier audio."""
from __future__ import annotations

import hashlib
import json

from shared.options import SynthesisOptions
from worker.text.segmenter import Segment

PREFIX = "voxq:cache:"


def cache_key(segments: list[Segment], options: SynthesisOptions, engine_name: str, model_version: str) -> str:
    # Keyed on the normalised segments, not the raw text: "3%" and "百分之三" sound the same.
    payload = {
        "segments": [[s.text, s.pause] for s in segments],
        "options": options.model_dump(mode="json"),
        "engine": engine_name,
        "model": model_version,
    }
    digest = hashlib.sha256(json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()).hexdigest()
    return PREFIX + digest
