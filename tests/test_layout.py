"""The API process never loads the workers or the model stack, even while it serves every route."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

FORBIDDEN = ("worker", "ai_edge_litert", "torch", "jieba", "pypinyin", "cn2an", "pyworld", "soundfile", "soxr")

PROBE = """
import json, sys
from api.app import create_app
app = create_app({"TESTING": True, "VOXQ_SETTINGS": {"redis_url": sys.argv[1]}})
client = app.test_client()
client.post("/v1/jobs", json={"text": "你好"})
for path in ("/", "/openapi.json", "/v1/voices", "/v1/jobs", "/readyz", "/metrics"):
    client.get(path)
client.post("/tts", data={"text": "你好"})
print(json.dumps(sorted(sys.modules)))
"""


def test_api_imports_no_worker_or_model_code(redis_url):
    run = subprocess.run([sys.executable, "-c", PROBE, redis_url], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env={"PATH": "/usr/bin:/bin", "VOXQ_SPEECH_TIMEOUT_S": "1"})
    assert run.returncode == 0, run.stderr
    modules = json.loads(run.stdout.strip().splitlines()[-1])
    loaded = [m for m in modules if m.split(".")[0] in FORBIDDEN]
    assert loaded == []
