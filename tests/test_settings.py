"""One settings object: every variable the README lists keeps its name, and a bad value stops a
process at start-up with one clear line per variable, never a traceback."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import Settings, SettingsError
from tests.support import ROOT, worker_env

# Each variable the README documents, a value unlike its default, and where it lands.
DOCUMENTED = {
    "REDIS_URL": ("redis://:pw@redis.internal:6380/2", lambda s: s.redis_url),
    "VOXQ_DATA_DIR": ("/srv/voxq", lambda s: str(s.data_dir)),
    "VOXQ_ENGINE": ("fastspeech2-torch", lambda s: s.engine.name),
    "VOXQ_DEVICE": ("cuda", lambda s: s.engine.device),
    "VOXQ_MODEL_DIR": ("/models/baker", lambda s: str(s.engine.model_dir)),
    "VOXQ_LEXICON_MAX_BYTES": ("4096", lambda s: str(s.text.lexicon_max_bytes)),
    "VOXQ_LEXICON_MAX_ENTRIES": ("7", lambda s: str(s.text.lexicon_max_entries)),
    "VOXQ_LEXICONS_PER_TENANT": ("3", lambda s: str(s.text.lexicons_per_tenant)),
    "VOXQ_LEXICONS_PER_REQUEST": ("2", lambda s: str(s.text.lexicons_per_request)),
    "VOXQ_PREVIEW_MAX_CHARS": ("99", lambda s: str(s.text.preview_max_chars)),
    "VOXQ_SUBTITLE_MAX_CHARS": ("30", lambda s: str(s.text.subtitle_max_chars)),
    "VOXQ_ENGINE_THREADS": ("3", lambda s: str(s.engine.threads)),
    "VOXQ_MAX_CHARS": ("5000", lambda s: str(s.limits.max_chars)),
    "VOXQ_MAX_SEGMENT_CHARS": ("40", lambda s: str(s.text.max_segment_chars)),
    "VOXQ_SENTENCE_PAUSE_S": ("0.5", lambda s: str(s.text.sentence_pause_s)),
    "VOXQ_CLAUSE_PAUSE_S": ("0.25", lambda s: str(s.text.clause_pause_s)),
    "VOXQ_RESULT_TTL_S": ("3600", lambda s: str(s.jobs.result_ttl_s)),
    "VOXQ_MAX_ATTEMPTS": ("5", lambda s: str(s.jobs.max_attempts)),
    "VOXQ_VISIBILITY_TIMEOUT_S": ("120", lambda s: str(s.jobs.visibility_timeout_s)),
    "VOXQ_HEARTBEAT_TTL_S": ("12", lambda s: str(s.jobs.heartbeat_ttl_s)),
    "VOXQ_MAX_REQUEST_BYTES": ("2048", lambda s: str(s.limits.max_request_bytes)),
    "VOXQ_LOG_LEVEL": ("DEBUG", lambda s: s.log_level),
    "VOXQ_SPEECH_TIMEOUT_S": ("30.0", lambda s: str(s.limits.speech_timeout_s)),
    "VOXQ_API_KEYS": ("acme:" + "0" * 64, lambda s: s.keys.api_keys),
    "VOXQ_API_KEYS_FILE": ("/etc/voxq/keys.toml", lambda s: str(s.keys.api_keys_file)),
    "VOXQ_WEBHOOK_SECRETS_FILE": ("/etc/voxq/secrets.toml", lambda s: str(s.keys.webhook_secrets_file)),
    "VOXQ_RATE_LIMIT_PER_MINUTE": ("60", lambda s: str(s.keys.rate_limit_per_minute)),
    "VOXQ_CHARS_PER_DAY": ("1000", lambda s: str(s.keys.chars_per_day)),
    "VOXQ_WEBHOOK_PORTS": ("443,9000-9001", lambda s: ",".join(map(str, sorted(s.webhooks.ports)))),
    "VOXQ_WEBHOOK_ALLOW_NETWORKS": ("10.1.0.0/16", lambda s: ",".join(s.webhooks.allow_networks)),
    "VOXQ_WEBHOOK_RETRY_SCHEDULE": ("0,10", lambda s: ",".join(f"{d:g}" for d in s.webhooks.retry_schedule)),
    "VOXQ_WEBHOOK_TIMEOUT_S": ("20", lambda s: f"{s.webhooks.timeout_s:g}"),
    "VOXQ_METRICS_PORT": ("9100", lambda s: str(s.metrics.port)),
    "VOXQ_METRICS_ADDR": ("127.0.0.1", lambda s: s.metrics.addr),
    "VOXQ_BATCH_MAX": ("8", lambda s: str(s.engine.batch_max)),
    "VOXQ_CHUNK_S": ("20.0", lambda s: str(s.text.chunk_s)),
    "VOXQ_FIRST_CHUNK_S": ("1.5", lambda s: str(s.text.first_chunk_s)),
    "VOXQ_TENANT_CHUNKS_IN_FLIGHT": ("6", lambda s: str(s.jobs.tenant_chunks_in_flight)),
    "VOXQ_CHUNK_TIMEOUT_S": ("120", lambda s: str(s.jobs.chunk_timeout_s)),
    "VOXQ_BATCH_WAIT_MS": ("20.0", lambda s: str(s.engine.batch_wait_ms)),
    "XDG_STATE_HOME": ("/srv/state", lambda s: str(s.cli.xdg_state_home)),
    "VOXQ_LIVE_PAUSE_MS": ("250", lambda s: str(s.live.pause_ms)),
    "VOXQ_LIVE_MAX_SENTENCE_CHARS": ("80", lambda s: str(s.live.max_sentence_chars)),
    "VOXQ_LIVE_AHEAD_S": ("6.0", lambda s: str(s.live.ahead_s)),
    "VOXQ_LIVE_IDLE_TIMEOUT_S": ("30.0", lambda s: str(s.live.idle_timeout_s)),
    "VOXQ_LIVE_MAX_SESSION_S": ("600.0", lambda s: str(s.live.max_session_s)),
    "VOXQ_LIVE_MAX_CHARS": ("9000", lambda s: str(s.live.max_chars)),
    "VOXQ_LIVE_SESSIONS_PER_TENANT": ("5", lambda s: str(s.live.sessions_per_tenant)),
    "VOXQ_LIVE_SESSIONS_PER_PROCESS": ("50", lambda s: str(s.live.sessions_per_process)),
    "VOXQ_LIVE_BUFFER_BYTES": ("1048576", lambda s: str(s.live.buffer_bytes)),
    "VOXQ_LIVE_SEND_TIMEOUT_S": ("5.0", lambda s: str(s.live.send_timeout_s)),
    "VOXQ_LIVE_LEASE_S": ("10.0", lambda s: str(s.live.lease_s)),
    "VOXQ_DASHSCOPE_VOICES_FILE": ("/etc/voxq/dashscope.json", lambda s: str(s.live.dashscope_voices_file)),
}
EXPECTED = {"VOXQ_WEBHOOK_PORTS": "443,9000,9001"}


def test_every_documented_variable_keeps_its_name(monkeypatch):
    for name, (value, _) in DOCUMENTED.items():
        monkeypatch.setenv(name, value)
    settings = Settings.load()
    for name, (value, read) in DOCUMENTED.items():
        assert read(settings) == EXPECTED.get(name, value), name


def test_the_readme_documents_the_variables_the_settings_read():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [name for name in DOCUMENTED if f"`{name}`" not in readme and name not in readme]
    assert missing == []


def test_every_bad_value_is_named_on_its_own_line(monkeypatch):
    monkeypatch.setenv("VOXQ_MAX_CHARS", "lots")
    monkeypatch.setenv("VOXQ_WEBHOOK_PORTS", "0")
    monkeypatch.setenv("VOXQ_DEVICE", "tpu")
    monkeypatch.setenv("REDIS_URL", "http://redis:6379")
    with pytest.raises(SettingsError) as err:
        Settings.load()
    lines = str(err.value).splitlines()
    assert [line.split(":")[0] for line in lines] == ["REDIS_URL", "VOXQ_DEVICE", "VOXQ_MAX_CHARS",
                                                      "VOXQ_WEBHOOK_PORTS"]
    assert "'lots'" in lines[2] and "Value error" not in str(err.value)


def _start(cmd: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("process", ["worker", "api", "cli"])
def test_a_bad_value_stops_the_start_with_one_line(process, redis_url, data_dir, tmp_path):
    env = worker_env(redis_url, data_dir, VOXQ_MAX_CHARS="lots")
    cmd = {
        "worker": [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--pool", "solo", "-Q", "interactive"],
        "api": [sys.executable, "-m", "gunicorn", "-c", "python:api.gunicorn_conf", "--bind", "127.0.0.1:0",
                "api.app:create_app()"],
        "cli": [str(Path(sys.executable).with_name("voxq")), "synth", "你好", "-o", str(tmp_path / "x.wav")],
    }[process]
    run = _start(cmd, env)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "VOXQ_MAX_CHARS: Input should be a valid integer" in output
    assert "Traceback" not in output
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.parametrize("given", ["", "relative/state", None])
def test_the_state_directory_follows_the_xdg_rule(monkeypatch, given):
    # The XDG spec: an unset, empty or relative XDG_STATE_HOME means ~/.local/state.
    monkeypatch.setenv("HOME", "/home/someone")
    if given is None:
        monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_STATE_HOME", given)
    assert Settings.load().cli.state_dir == Path("/home/someone/.local/state/voxq")
    monkeypatch.setenv("XDG_STATE_HOME", "/srv/state")
    assert Settings.load().cli.state_dir == Path("/srv/state/voxq")
