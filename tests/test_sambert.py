"""The optional Sambert engine: its start-up error path and its voice and emotion mapping.

ModelScope's packages and model cannot be installed here (their index and hub are not
reachable), so the engine itself never runs in this suite; the README says so.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from shared.config import Settings
from tests.support import ROOT, worker_env
from worker.engines import EngineError, preflight
from worker.engines import sambert
from worker.engines.base import UnknownVoice


def test_missing_packages_are_named_with_where_to_get_them():
    missing = sambert.missing_requirements(find_spec=lambda name: None)
    assert len(missing) == 3
    assert 'pip install "voxq[sambert]"' in missing[0]
    assert "kantts" in missing[1] and sambert.MODELSCOPE_INDEX in missing[1]
    assert "ttsfrd" in missing[2] and sambert.MODELSCOPE_INDEX in missing[2]
    assert sambert.missing_requirements(find_spec=lambda name: object()) == []


def test_missing_model_directory_says_how_to_get_it(tmp_path):
    with pytest.raises(sambert.MissingDependency, match="modelscope download --model damo/speech_sambert"):
        sambert.model_directory(Settings.load(engine={"model_dir": tmp_path}))
    (tmp_path / "configuration.json").write_text("{}")
    assert sambert.model_directory(Settings.load(engine={"model_dir": tmp_path})) == tmp_path


def test_preflight_reports_what_is_missing_here():
    with pytest.raises(EngineError, match="modelscope"):
        preflight(Settings.load(engine={"name": "sambert"}))


def test_worker_refuses_to_start_and_says_why(redis_url, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--pool", "prefork", "--concurrency", "1",
         "-Q", "interactive", "--loglevel", "WARNING"],
        cwd=ROOT, env=worker_env(redis_url, tmp_path, VOXQ_ENGINE="sambert"),
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode != 0
    assert "voxq worker: error: the sambert engine needs:" in run.stderr
    assert "kantts" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("emotion,category", [
    ("happy", "happy"), ("sad", "sad"), ("angry", "angry"), ("surprised", "surprise"),
])
def test_emotions_become_ssml(emotion, category):
    assert sambert.ssml("你好<b>", emotion) == (
        f'<speak><emotion category="{category}" intensity="1.0">你好&lt;b&gt;</emotion></speak>'
    )


def test_neutral_and_calm_are_plain_text():
    assert sambert.ssml("你好", "neutral") == sambert.ssml("你好", "calm") == "你好"


def test_voices():
    assert [v.name for v in sambert.VOICES] == ["zhitian_emo", "zhiyan_emo", "zhibei_emo", "zhizhe_emo"]
    engine = sambert.SambertEngine(pipeline=None, model_version="test")
    assert engine.voice(None) == "zhitian_emo"
    assert engine.voice("zhizhe_emo") == "zhizhe_emo"
    with pytest.raises(UnknownVoice, match="valid: zhitian_emo"):
        engine.voice("baker")
