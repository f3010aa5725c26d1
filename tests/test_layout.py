"""The API process never loads the workers or the model stack, even while it serves every route."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys

from tests.conftest import ROOT

FORBIDDEN = ("worker", "ai_edge_litert", "torch", "jieba", "pypinyin", "cn2an", "pyworld", "soundfile", "soxr", "av",
             "pyloudnorm", "scipy")
# POST /v1/text/preview runs the shared text front end (shared/text) in the API process, so it,
# and only it, loads jieba, pypinyin and cn2an; never the workers or the model stack.
PREVIEW_FORBIDDEN = ("worker", "ai_edge_litert", "torch", "pyworld", "soundfile", "soxr", "av", "pyloudnorm", "scipy")

PROBE = """
import json, sys
from api.app import create_app
app = create_app({"TESTING": True, "VOXQ_SETTINGS": {"redis_url": sys.argv[1]}})
client = app.test_client()
client.post("/v1/jobs", json={"text": "你好"})
for path in ("/", "/openapi.json", "/v1/voices", "/v1/jobs", "/readyz", "/metrics"):
    client.get(path)
client.post("/tts", data={"text": "你好"})
client.put("/v1/lexicons/x", json={"entries": [{"grapheme": "行长", "phoneme": "hang2 zhang3"}]})
client.post("/v1/jobs", json={"text": "<speak>你好</speak>", "text_type": "ssml", "lexicons": ["x"]})
if len(sys.argv) > 2:
    assert client.post("/v1/text/preview", json={"text": "行长说2023年"}).status_code == 200
print(json.dumps(sorted(sys.modules)))
"""


def test_api_imports_no_worker_or_model_code(redis_url):
    run = subprocess.run([sys.executable, "-c", PROBE, redis_url], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env={"PATH": "/usr/bin:/bin", "VOXQ_SPEECH_TIMEOUT_S": "1"})
    assert run.returncode == 0, run.stderr
    modules = json.loads(run.stdout.strip().splitlines()[-1])
    loaded = [m for m in modules if m.split(".")[0] in FORBIDDEN]
    assert loaded == []


def test_the_preview_loads_the_text_front_end_but_no_worker_or_model(redis_url):
    run = subprocess.run([sys.executable, "-c", PROBE, redis_url, "preview"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "VOXQ_SPEECH_TIMEOUT_S": "1"})
    assert run.returncode == 0, run.stderr
    modules = json.loads(run.stdout.strip().splitlines()[-1])
    assert "jieba" in modules and "pypinyin" in modules
    assert [m for m in modules if m.split(".")[0] in PREVIEW_FORBIDDEN] == []



PRODUCT = ("api", "worker", "shared", "voxq")
STORE = ROOT / "shared" / "store"
KEY_NAME = re.compile(r"^voxq:[a-z][a-z-]*(:|$)")  # voxq:job:..., voxq:workers; not "voxq: error: ..."


def redis_offences(source: str, where: str) -> list[str]:
    """What in `source` bypasses shared/store: importing redis, reaching for a store's client,
    or spelling a key name."""
    offences = []
    for node in ast.walk(ast.parse(source, where)):
        if isinstance(node, ast.Import):
            offences += [f"{where}:{node.lineno} imports {a.name}" for a in node.names
                         if a.name.split(".")[0] == "redis"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "redis":
            offences.append(f"{where}:{node.lineno} imports from {node.module}")
        elif isinstance(node, ast.Attribute) and node.attr in ("redis", "client") and _through_a_store(node.value):
            offences.append(f"{where}:{node.lineno} reaches for the store's Redis client")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and KEY_NAME.match(node.value):
            offences.append(f"{where}:{node.lineno} spells the key {node.value!r}")
    return offences


def _through_a_store(node) -> bool:
    # store.client, svc.store.jobs.redis, ...: any chain of names that passes through a store.
    while isinstance(node, ast.Attribute):
        if node.attr == "jobs" or node.attr.endswith("store"):
            return True
        node = node.value
    return isinstance(node, ast.Name) and (node.id == "jobs" or node.id.endswith("store"))


def test_only_the_store_talks_to_redis():
    offences = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            if STORE not in path.parents:
                offences += redis_offences(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert offences == []


def test_the_redis_rule_catches_each_thing_it_names():
    sample = ("import redis\nfrom redis.exceptions import RedisError\n"
              "svc.store.client.get(key)\nself.store.jobs.redis.hset(k, 'a', 1)\nKEY = 'voxq:idem:x'\n"
              "store.jobs.get(job_id)\nclient.get('/v1/jobs')\nprint('voxq: error: no')\n")
    assert sorted(redis_offences(sample, "sample")) == [
        "sample:1 imports redis", "sample:2 imports from redis.exceptions",
        "sample:3 reaches for the store's Redis client", "sample:4 reaches for the store's Redis client",
        "sample:5 spells the key 'voxq:idem:x'"]
