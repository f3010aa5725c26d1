"""Structured JSON logs for every voxq process: one object per line, never the text itself."""
from __future__ import annotations

import json
import logging
import sys
import time


# Fields a call may pass with `extra=`; the text itself is never one of them.
_FIELDS = ("job_id", "text_chars", "text_sha256", "duration_s", "status",
           "http_method", "route", "http_status")


def job_fields(record, **more) -> dict:
    """The `extra=` for a log line about a job: its ID, text length and text hash, never the text."""
    return {"job_id": record.id, "text_chars": record.text_chars, "text_sha256": record.text_sha256, **more}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("jieba").setLevel(logging.WARNING)
