"""Settings for every voxq process, read from the environment once, at start-up, never at import."""
from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field


class Settings(BaseModel):
    redis_url: str = "redis://127.0.0.1:6379/0"
    data_dir: Path = Path("./data")
    engine: str = "fastspeech2-litert"
    device: str = "cpu"
    model_dir: Path | None = None
    engine_threads: int = Field(1, ge=1)
    max_chars: int = Field(100_000, ge=1)
    max_segment_chars: int = Field(60, ge=8)
    sentence_pause_s: float = Field(0.35, ge=0)
    clause_pause_s: float = Field(0.15, ge=0)
    result_ttl_s: int = Field(7 * 24 * 3600, ge=60)
    max_attempts: int = Field(3, ge=1)
    visibility_timeout_s: int = Field(3600, ge=1)
    heartbeat_ttl_s: int = Field(30, ge=5)
    idempotency_ttl_s: int = Field(24 * 3600, ge=1)
    max_metadata_bytes: int = 4096
    max_request_bytes: int = 1 << 20
    log_level: str = "INFO"
    # Batching engines (fastspeech2-torch): segments per batch and how long a batch waits to fill.
    batch_max: int = Field(16, ge=1)
    batch_wait_ms: float = Field(10, ge=0)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "Settings":
        env = os.environ if environ is None else environ
        names = {
            "redis_url": "REDIS_URL",
            "data_dir": "VOXQ_DATA_DIR",
            "engine": "VOXQ_ENGINE",
            "device": "VOXQ_DEVICE",
            "model_dir": "VOXQ_MODEL_DIR",
            "engine_threads": "VOXQ_ENGINE_THREADS",
            "max_chars": "VOXQ_MAX_CHARS",
            "max_segment_chars": "VOXQ_MAX_SEGMENT_CHARS",
            "sentence_pause_s": "VOXQ_SENTENCE_PAUSE_S",
            "clause_pause_s": "VOXQ_CLAUSE_PAUSE_S",
            "result_ttl_s": "VOXQ_RESULT_TTL_S",
            "max_attempts": "VOXQ_MAX_ATTEMPTS",
            "visibility_timeout_s": "VOXQ_VISIBILITY_TIMEOUT_S",
            "heartbeat_ttl_s": "VOXQ_HEARTBEAT_TTL_S",
            "idempotency_ttl_s": "VOXQ_IDEMPOTENCY_TTL_S",
            "max_request_bytes": "VOXQ_MAX_REQUEST_BYTES",
            "log_level": "VOXQ_LOG_LEVEL",
            "batch_max": "VOXQ_BATCH_MAX",
            "batch_wait_ms": "VOXQ_BATCH_WAIT_MS",
        }
        values = {field: env[var] for field, var in names.items() if env.get(var)}
        values.update(overrides)
        return cls(**values)
