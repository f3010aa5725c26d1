"""Settings for every voxq process: one pydantic-settings object, read from the environment when
a process starts (the app factory, the worker's init, a CLI command), never at import.

Each section reads its own variables; every name is the one the README lists. A bad value stops
the process at start-up with one line per variable (`SettingsError`), never later in a request.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _section(prefix: str) -> SettingsConfigDict:
    # populate_by_name: tests and the CLI may pass a field by its name instead of its variable.
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", populate_by_name=True, frozen=True)


def _env(name: str, field: str) -> AliasChoices:
    """Read `field` from the variable `name` (a name the README fixed, outside the section's prefix)."""
    return AliasChoices(name, field)


class EngineSettings(BaseSettings):
    """Which voice model runs, where, and how (VOXQ_ENGINE, VOXQ_DEVICE, ...)."""

    model_config = _section("VOXQ_")

    name: str = Field("fastspeech2-litert", validation_alias=_env("VOXQ_ENGINE", "name"))
    device: str = "cpu"
    model_dir: Path | None = None
    threads: int = Field(1, ge=1, validation_alias=_env("VOXQ_ENGINE_THREADS", "threads"))
    # Batching engines (fastspeech2-torch): segments per batch and how long a batch waits to fill.
    batch_max: int = Field(16, ge=1)
    batch_wait_ms: float = Field(10, ge=0)
    sambert_model: str = "damo/speech_sambert-hifigan_tts_zh-cn_16k"

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value != "cpu" and not value.startswith("cuda"):
            raise ValueError("must be cpu, cuda or cuda:N")
        return value


class TextSettings(BaseSettings):
    """How text is split into segments and how long the pauses between them are."""

    model_config = _section("VOXQ_")

    max_segment_chars: int = Field(60, ge=8)
    sentence_pause_s: float = Field(0.35, ge=0)
    clause_pause_s: float = Field(0.15, ge=0)
    # A job is spoken in chunks of whole segments of about this much audio; the first is smaller,
    # so the first audio comes sooner. A new job's first chunk waits for at most one chunk in
    # flight on each worker, so this bounds that wait (README, "Chunks and streaming").
    chunk_s: float = Field(4.0, gt=0)
    first_chunk_s: float = Field(2.0, gt=0)
    # Pronunciation lexicons (VOXQ_LEXICON_*): size of one, entries in one, how many a tenant
    # stores and how many one request may name.
    lexicon_max_bytes: int = Field(256 * 1024, ge=1024)
    lexicon_max_entries: int = Field(5000, ge=1)
    lexicons_per_tenant: int = Field(100, ge=1)
    lexicons_per_request: int = Field(10, ge=1)
    # POST /v1/text/preview runs the front end in the API process: a paragraph, not a book.
    preview_max_chars: int = Field(5000, ge=1)
    # Subtitles: a sentence longer than this many characters is split into several cues.
    subtitle_max_chars: int = Field(24, ge=4)


# What a job's first task may spend planning, per character of its text (README, "Hung work").
PLAN_BOUND_S_PER_CHAR = 0.005


class JobSettings(BaseSettings):
    """Retention, attempts and liveness of jobs and workers."""

    model_config = _section("VOXQ_")

    result_ttl_s: int = Field(7 * 24 * 3600, ge=60)
    max_attempts: int = Field(3, ge=1)
    # How long a message a worker took stays its own without a renewal: live workers renew
    # theirs every quarter of this (worker/leases.py), so it bounds recovery from a dead worker
    # (plus a quarter for kombu's restore sweep), not the length of a job.
    visibility_timeout_s: int = Field(20, ge=2)
    # A worker process beats every third of this; /readyz counts only workers that beat within it.
    heartbeat_ttl_s: int = Field(9, ge=2)
    # A stop (Ctrl-C on `voxq up`, SIGTERM in a container) waits this long for a worker to finish
    # the chunk it speaks; after it, the worker hands its chunks back (Celery's cold shutdown).
    stop_grace_s: int = Field(30, ge=1)
    # Chunks of one tenant queued or running at once: the fairness bound (see README, "Chunks").
    tenant_chunks_in_flight: int = Field(4, ge=1)
    # A dispatched chunk that has not landed after this long is dispatched again, and a job still
    # queued this long after it was accepted has its first task sent again (its message was lost).
    chunk_timeout_s: int = Field(300, ge=5)
    # A chunk's task that runs longer than hang_min_s plus hang_factor times the seconds of audio
    # its chunk should make is hung (a pool process stopped, or stuck in native code): Celery's
    # hard time limit kills that process and the chunk goes back to the queue at once, whatever
    # its worker's main process says (README, "Hung work"). CPU synthesis runs several times
    # faster than real time, so a healthy chunk ends far inside the bound.
    hang_min_s: int = Field(30, ge=1)
    hang_factor: float = Field(4.0, ge=1)

    def hang_bound_s(self, audio_s: float) -> int:
        """The time limit of a task that speaks `audio_s` seconds of audio."""
        return math.ceil(self.hang_min_s + self.hang_factor * audio_s)

    def first_task_bound_s(self, text_chars: int, first_chunk_s: float) -> int:
        """The time limit of a job's first task: it plans the whole text, then speaks the first
        chunk. Planning takes about a millisecond a character; five is the bound."""
        return self.hang_bound_s(first_chunk_s) + math.ceil(text_chars * PLAN_BOUND_S_PER_CHAR)


class LimitSettings(BaseSettings):
    """Sizes a request may have, and how long a caller may wait for speech."""

    model_config = _section("VOXQ_")

    max_chars: int = Field(100_000, ge=1)
    max_request_bytes: int = Field(1 << 20, ge=1024)
    max_metadata_bytes: int = Field(4096, ge=0)
    idempotency_ttl_s: int = Field(24 * 3600, ge=1)
    speech_timeout_s: float = Field(60.0, gt=0)


class KeySettings(BaseSettings):
    """Where API keys and webhook secrets come from, and the default per-key limits."""

    model_config = _section("VOXQ_")

    api_keys: str = ""
    api_keys_file: Path | None = None
    webhook_secrets_file: Path | None = None
    rate_limit_per_minute: int = Field(600, ge=0)
    chars_per_day: int = Field(1_000_000, ge=0)


class WebhookSettings(BaseSettings):
    """Where callbacks may go and how deliveries are retried (VOXQ_WEBHOOK_*)."""

    model_config = _section("VOXQ_WEBHOOK_")

    # NoDecode: these are comma-separated lists in the environment, not JSON.
    ports: Annotated[frozenset[int], NoDecode] = frozenset({80, 443, 8080, 8443})
    allow_networks: Annotated[tuple[str, ...], NoDecode] = ()
    # Seconds before each attempt: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 24 h.
    retry_schedule: Annotated[tuple[float, ...], NoDecode] = (0, 5, 300, 1800, 7200, 18000, 36000, 86400)
    timeout_s: float = Field(12, ge=1, le=60)

    @field_validator("ports", mode="before")
    @classmethod
    def _ports(cls, value: Any):
        if not isinstance(value, str):
            return value
        ports: set[int] = set()
        for item in filter(None, (p.strip() for p in value.split(","))):
            low, _, high = item.partition("-")
            try:
                first, last = int(low), int(high or low)
            except ValueError:
                raise ValueError(f"{item!r} is not a port or a range like 8000-8999") from None
            if not 1 <= first <= last <= 65535:
                raise ValueError(f"{item!r} is outside 1-65535")
            ports.update(range(first, last + 1))
        return frozenset(ports)

    @field_validator("allow_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any):
        if isinstance(value, str):
            value = [n.strip() for n in value.split(",") if n.strip()]
        import ipaddress

        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not a CIDR like 10.1.0.0/16") from None
        return tuple(value)

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any):
        if isinstance(value, str):
            try:
                value = [float(d) for d in value.split(",") if d.strip()]
            except ValueError:
                raise ValueError(f"must be comma-separated seconds, not {value!r}") from None
        if not value or any(float(d) < 0 for d in value):
            raise ValueError("needs at least one delay, none negative")
        return tuple(value)


class MetricsSettings(BaseSettings):
    """A worker node's Prometheus endpoint (VOXQ_METRICS_PORT, VOXQ_METRICS_ADDR)."""

    model_config = _section("VOXQ_METRICS_")

    port: int | None = Field(None, ge=1, le=65535)
    addr: str = "0.0.0.0"
    multiproc_dir: Path | None = Field(None, validation_alias=_env("PROMETHEUS_MULTIPROC_DIR", "multiproc_dir"))


class LiveSettings(BaseSettings):
    """Live sessions over WebSocket (api/live_session.py): how text becomes sentences, and the
    bounds that keep one session, one tenant or one slow client from holding the API
    (VOXQ_LIVE_*)."""

    model_config = _section("VOXQ_LIVE_")

    # A clause is spoken once the text has paused this long: a model writing a long sentence
    # without a full stop is heard while it writes; a token stream (a delta every 30 ms) never
    # pauses this long mid-word.
    pause_ms: int = Field(400, ge=50)
    # A sentence longer than this is spoken up to its last clause mark without waiting.
    max_sentence_chars: int = Field(120, ge=8)
    # Seconds of audio a session has made (or is making) ahead of what its listener has heard: the
    # next sentence is submitted when less is left, so it is ready before the one playing ends,
    # and the workers speak no further ahead, which keeps every session's next sentence near the
    # front of the queue and makes a barge-in cheap.
    ahead_s: float = Field(4.0, gt=0)
    idle_timeout_s: float = Field(60.0, gt=0)
    max_session_s: float = Field(3600.0, gt=0)
    max_chars: int = Field(100_000, ge=1)
    sessions_per_tenant: int = Field(50, ge=1)
    sessions_per_process: int = Field(500, ge=1)
    # Audio waiting for a client that reads slower than speech is made: past this the session
    # waits for the client; one that takes nothing for send_timeout_s is told (close code 4409)
    # and cut off.
    buffer_bytes: int = Field(4 << 20, ge=64 * 1024)
    send_timeout_s: float = Field(15.0, gt=0)
    # How often an API process renews its sessions' leases; a session whose lease ran out (its
    # API process died) is ended as failed by the workers' sweep.
    lease_s: float = Field(15.0, ge=2)
    # DashScope model and voice names -> voxq voices and emotions, on top of the built-in table
    # (api/dashscope_voices.json): a JSON object of the same shape (README, "Live speech").
    dashscope_voices_file: Path | None = Field(None, validation_alias=_env("VOXQ_DASHSCOPE_VOICES_FILE",
                                                                            "dashscope_voices_file"))


class CliSettings(BaseSettings):
    """What the `voxq` command reads beside the rest: the server it talks to, what `voxq up`
    must tell apart from a default, and where it records a running cluster (VOXQ_URL,
    VOXQ_API_KEY, REDIS_URL, FLOWER_BASIC_AUTH, XDG_STATE_HOME)."""

    model_config = _section("VOXQ_")

    url: str = "http://127.0.0.1:5000"
    # repr=False: a secret, kept out of any repr of the settings (a log line, a traceback).
    api_key: str | None = Field(None, repr=False)
    # REDIS_URL as given, None when unset: `voxq up` then starts a private Redis, never the
    # process default (whatever listens on 6379).
    redis_url: str | None = Field(None, validation_alias=_env("REDIS_URL", "redis_url"))
    # `voxq up --redis-ha`: how long its sentinels wait before they call the master down, and
    # their failover timeout (Sentinel's down-after-milliseconds and failover-timeout).
    redis_ha_down_after_ms: int = Field(5000, ge=100)
    redis_ha_failover_timeout_ms: int = Field(15000, ge=1000)
    # Unset: `voxq up` makes a one-off Flower login rather than run Flower open.
    flower_basic_auth: str | None = Field(None, repr=False,
                                          validation_alias=_env("FLOWER_BASIC_AUTH", "flower_basic_auth"))
    # The XDG base directory for state: where `voxq up` records itself, so `voxq status` finds it
    # from any folder. Read as the XDG spec says: unset, empty or relative means ~/.local/state.
    xdg_state_home: Path | None = Field(None, validation_alias=_env("XDG_STATE_HOME", "xdg_state_home"))

    @field_validator("xdg_state_home", mode="before")
    @classmethod
    def _xdg_state_home(cls, value: Any) -> Any:
        if value is None or not str(value) or not Path(str(value)).is_absolute():
            return None
        return value

    @property
    def state_dir(self) -> Path:
        """voxq's folder in the user's state directory (it need not exist yet)."""
        return (self.xdg_state_home or Path.home() / ".local" / "state") / "voxq"


_SECTIONS = {
    "engine": EngineSettings, "text": TextSettings, "jobs": JobSettings, "limits": LimitSettings,
    "keys": KeySettings, "webhooks": WebhookSettings, "metrics": MetricsSettings, "cli": CliSettings,
    "live": LiveSettings,
}


class SettingsError(ValueError):
    """A variable has a bad value; the message names each one, one per line."""


class ProcessSettings(BaseSettings):
    """What every process needs first: where Redis and the audio are, and how much to log."""

    model_config = _section("VOXQ_")

    # REDIS_URL, not VOXQ_REDIS_URL: the name every Redis client and chart already uses.
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias=_env("REDIS_URL", "redis_url"))
    data_dir: Path = Path("./data")
    log_level: str = "INFO"

    # Sentinel (README, "High availability"): REDIS_URL lists the sentinels in Celery's form,
    # `sentinel://:PASSWORD@host:26379/0;sentinel://host2:26379;...` (the password and database
    # are the master's, from the first entry), and these name the master and the sentinels' own
    # password, if they have one.
    redis_sentinel_master: str | None = Field(None, validate_default=True)
    redis_sentinel_password: str | None = Field(None, repr=False)
    # Replicas that must hold a write before voxq acknowledges it (a 202, a chunk that landed):
    # None is 1 with Sentinel, 0 (no wait) with a plain URL. The wait is bounded by the timeout.
    redis_wait_replicas: int | None = Field(None, ge=0)
    # At most 4 s: under the store's 5 s read timeout (shared/store/__init__.py, connect).
    redis_wait_timeout_ms: int = Field(1000, ge=1, le=4000)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if value.startswith("sentinel://"):
            for entry in value.split(";"):
                parts = urlsplit(entry)
                if parts.scheme != "sentinel" or not parts.hostname:
                    raise ValueError("each ;-separated entry must be sentinel://[:password@]host:port[/db]")
                try:
                    parts.port  # noqa: B018 - raises on a port that is not a number
                except ValueError:
                    raise ValueError("each ;-separated entry must be sentinel://[:password@]host:port[/db]") from None
            return value
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss://, unix:// or sentinel://")
        return value

    @field_validator("redis_sentinel_master")
    @classmethod
    def _sentinel_master(cls, value: str | None, info: ValidationInfo) -> str | None:
        url = info.data.get("redis_url") or ""
        if url.startswith("sentinel://") and not value:
            raise ValueError("must name the master (as in the sentinels' `sentinel monitor NAME ...`) "
                             "when REDIS_URL is a sentinel:// URL")
        return value or None

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        value = value.upper()
        if value not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value


class Settings(BaseModel):
    """Every setting of a voxq process, by section. Build it with `Settings.load()`.

    A plain model over sections that read the environment themselves: a section read as one
    variable would collide with a real one (the `engine` section and VOXQ_ENGINE).
    """

    model_config = ConfigDict(frozen=True)

    redis_url: str = ProcessSettings.model_fields["redis_url"].default
    redis_sentinel_master: str | None = None
    redis_sentinel_password: str | None = Field(None, repr=False)
    redis_wait_replicas: int | None = None
    redis_wait_timeout_ms: int = ProcessSettings.model_fields["redis_wait_timeout_ms"].default
    data_dir: Path = Path("./data")
    log_level: str = "INFO"
    engine: EngineSettings
    text: TextSettings
    jobs: JobSettings
    limits: LimitSettings
    keys: KeySettings
    webhooks: WebhookSettings
    metrics: MetricsSettings
    cli: CliSettings
    live: LiveSettings

    @property
    def redis(self) -> "RedisTarget":
        """Where Redis is, as every client of it needs it (shared/store/connection.py)."""
        return RedisTarget(self.redis_url, self.redis_sentinel_master, self.redis_sentinel_password,
                           self.redis_wait_replicas, self.redis_wait_timeout_ms)

    @classmethod
    def load(cls, **overrides: Any) -> "Settings":
        """The environment, with `overrides` on top: redis_url, data_dir and log_level by name,
        a section's as a dict of its fields (or a section object). Raises SettingsError naming
        every bad variable."""
        values = dict(overrides)
        problems: list[str] = []

        def build(section, given: dict):
            try:
                return _build(section, given)
            except SettingsError as exc:
                problems.append(str(exc))  # keep going: report every bad variable at once

        process = build(ProcessSettings, {k: values.pop(k) for k in ProcessSettings.model_fields if k in values})
        for name, section in _SECTIONS.items():
            given = values.get(name)
            if given is None or isinstance(given, dict):
                # Built here, not by pydantic from a dict, so the section still reads its
                # variables for the fields the override does not set.
                values[name] = build(section, given or {})
        if problems:
            raise SettingsError("\n".join(problems))
        return cls(**process.model_dump(), **values)


@dataclass(frozen=True)
class RedisTarget:
    """One Redis, plain or behind Sentinel: a URL and, for Sentinel, the master's name and the
    sentinels' password. Plain data: shared/store/connection.py makes clients of it, and
    shared/broker.py Celery's options. `wait_replicas` None means the default (1 with Sentinel)."""

    url: str
    sentinel_master: str | None = None
    sentinel_password: str | None = dataclass_field(default=None, repr=False)
    wait_replicas: int | None = None
    wait_timeout_ms: int = 1000

    @property
    def sentinel(self) -> bool:
        return self.url.startswith("sentinel://")

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """Each sentinel's (host, port), in the URL's order."""
        return [(urlsplit(entry).hostname, urlsplit(entry).port or 26379) for entry in self.url.split(";")]

    @property
    def password(self) -> str | None:
        """The master's password: the first entry's, as kombu reads it."""
        found = urlsplit(self.url.split(";")[0]).password
        return unquote(found) if found else None

    @property
    def db(self) -> int:
        path = urlsplit(self.url.split(";")[0]).path.strip("/")
        return int(path) if path.isdigit() else 0

    @property
    def replicas_to_wait(self) -> int:
        if self.wait_replicas is not None:
            return self.wait_replicas
        return 1 if self.sentinel else 0

    def transport_options(self) -> dict:
        """What kombu's (and Flower's) Sentinel transport needs beside the URL; {} for a plain URL."""
        if not self.sentinel:
            return {}
        # Short timeouts for the sentinels too: given sentinel_kwargs, redis-py takes none from
        # the connection's own.
        sentinel_kwargs: dict = {"socket_connect_timeout": 1, "socket_timeout": 1}
        if self.sentinel_password:
            sentinel_kwargs["password"] = self.sentinel_password
        return {"master_name": self.sentinel_master, "sentinel_kwargs": sentinel_kwargs}

    def environment(self) -> dict[str, str]:
        """The variables that make a child process reach this Redis."""
        env = {"REDIS_URL": self.url}
        if self.sentinel_master:
            env["VOXQ_REDIS_SENTINEL_MASTER"] = self.sentinel_master
        if self.sentinel_password:
            env["VOXQ_REDIS_SENTINEL_PASSWORD"] = self.sentinel_password
        return env


def _build(section: type[BaseSettings], given: dict) -> BaseSettings:
    try:
        return section(**given)
    except ValidationError as exc:
        raise SettingsError(explain(exc, section)) from None


def variable(section: type[BaseSettings], field: str) -> str:
    """The environment variable that sets `field` of `section`."""
    info = section.model_fields.get(field)
    alias = info.validation_alias if info else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"{section.model_config.get('env_prefix', '')}{field}".upper()


def explain(exc: ValidationError, section: type[BaseSettings]) -> str:
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        field = next((f for f, info in section.model_fields.items()
                      if f == field or (isinstance(info.validation_alias, AliasChoices)
                                        and field in info.validation_alias.choices)), field)
        message = error["msg"].removeprefix("Value error, ")
        given = error.get("input")
        shown = f" (got {given!r})" if isinstance(given, (str, int, float)) else ""
        lines.append(f"{variable(section, field)}: {message}{shown}")
    return "\n".join(lines)


def environment(**overrides: str) -> dict[str, str]:
    """The environment a child process starts with: all of this one's (PATH, HOME, every VOXQ_*
    variable, which the child's own Settings reads), with `overrides` on top."""
    return {**os.environ, **overrides}
