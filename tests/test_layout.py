"""The product's layout: the API never loads the workers or the model stack, only the store talks to
Redis, the imports have no cycle, and only the settings module reads the environment."""
from __future__ import annotations

import ast
import graphlib
import io
import json
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

from tests.support import ROOT

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


def product_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every product module by its dotted name (a package by its own, not `__init__`)."""
    modules = {}
    for package in PRODUCT:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports_of(name: str, source: str, modules, is_package: bool = False) -> set[str]:
    """The product modules that module `name` imports, at module level or inside a function; for
    `from package import name`, the submodule when there is one, else the package."""

    def known(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    found = set()
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Import):
            found.update(known(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            for alias in node.names:
                found.add(known(f"{base}.{alias.name}") if f"{base}.{alias.name}" in modules else known(base))
    return found - {None, name}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = product_modules(root)
    return {name: imports_of(name, path.read_text(encoding="utf-8"), modules, path.name == "__init__.py")
            for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[str]:
    """Each cycle in the graph, as `a -> b -> a`: one is found, its closing edge taken out, again."""
    graph = {node: set(edges) for node, edges in graph.items()}
    found = []
    while True:
        try:
            graphlib.TopologicalSorter(graph).prepare()
        except graphlib.CycleError as exc:
            cycle = exc.args[1][::-1]  # graphlib lists each module before one that imports it
            found.append(" -> ".join(cycle))
            graph[cycle[0]].discard(cycle[1])
        else:
            return sorted(found)


def test_the_product_imports_have_no_cycle():
    assert cycles(import_graph()) == []


def test_the_import_graph_sees_every_kind_of_import():
    modules = {"pkg": None, "pkg.a": None, "pkg.b": None, "pkg.sub": None, "pkg.sub.c": None, "other": None}
    source = ("import pkg.b\nfrom pkg.sub import c\nfrom . import b\nfrom .sub.c import thing\nimport json\n"
              "def later():\n    from other import helper\n    import pkg\n")
    assert imports_of("pkg.a", source, modules) == {"pkg.b", "pkg.sub.c", "other", "pkg"}
    assert imports_of("pkg.sub", "from . import c\nfrom .. import a\n", modules, is_package=True) == {
        "pkg.sub.c", "pkg.a"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"e"}, "e": {"d"}, "f": {"a"}}) in (
        ["a -> b -> c -> a", "d -> e -> d"], ["b -> c -> a -> b", "d -> e -> d"], ["c -> a -> b -> c", "d -> e -> d"],
        ["a -> b -> c -> a", "e -> d -> e"], ["b -> c -> a -> b", "e -> d -> e"], ["c -> a -> b -> c", "e -> d -> e"])


SETTINGS_MODULE = ROOT / "shared" / "config.py"
# The product modules that may read the environment themselves, because they run before any
# Settings exist; each line that does so carries a comment that says why.
BEFORE_SETTINGS = {"api/gunicorn_conf.py"}


def environment_reads(source: str, where: str) -> list[tuple[int, str]]:
    """(line, what) for each read of the process environment: os.environ, os.getenv, and
    `environ`/`getenv` imported from os (a WSGI `environ` argument is no such read)."""
    tree = ast.parse(source, where)
    from_os = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               and node.module == "os" for alias in node.names if alias.name in ("environ", "getenv")}
    reads = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")
                and isinstance(node.value, ast.Name) and node.value.id == "os"):
            reads.append((node.lineno, f"os.{node.attr}"))
        elif isinstance(node, ast.Name) and node.id in from_os:
            reads.append((node.lineno, node.id))
    return sorted(reads)


def commented_lines(source: str) -> set[int]:
    """The lines a comment explains: its own, and, for a comment on lines of its own, the line after the block."""
    lines = source.splitlines()
    explained = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            row = token.start[0]
            explained.add(row)
            while row <= len(lines) and lines[row - 1].lstrip().startswith("#"):
                row += 1
            explained.add(row)
    return explained


def environment_offences(source: str, where: str, allowed: bool) -> list[str]:
    explained = commented_lines(source)
    offences = []
    for line, what in environment_reads(source, where):
        if not allowed:
            offences.append(f"{where}:{line} reads the environment ({what}): use shared.config.Settings")
        elif line not in explained:
            offences.append(f"{where}:{line} reads the environment ({what}) without a comment that says why")
    return offences


def test_only_the_settings_module_reads_the_environment():
    offences, readers = [], set()
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == SETTINGS_MODULE:
                continue
            where = str(path.relative_to(ROOT))
            source = path.read_text(encoding="utf-8")
            offences += environment_offences(source, where, where in BEFORE_SETTINGS)
            if environment_reads(source, where):
                readers.add(where)
    assert offences == []
    assert readers == BEFORE_SETTINGS  # an entry that no longer reads goes from the list


def test_the_environment_rule_catches_each_thing_it_names():
    sample = ("import os\nfrom os import environ, getenv as ge\nos.environ.get('A')\nos.getenv('B')\n"
              "environ['C']\nge('D')\nenv = dict(os.environ)\n")
    assert environment_reads(sample, "s") == [(3, "os.environ"), (4, "os.getenv"), (5, "environ"), (6, "ge"),
                                              (7, "os.environ")]
    wsgi = "def app(environ, start_response):\n    return request.environ.get('PATH_INFO') or environ.get('X')\n"
    assert environment_reads(wsgi, "wsgi") == []
    commented = ("import os\n# Before settings exist: the server reads it itself.\nA = os.environ.get('A')\n"
                 "B = os.getenv('B')  # read here, before the app: gunicorn's master has none\nC = os.getenv('C')\n")
    assert environment_offences(commented, "s", allowed=True) == [
        "s:5 reads the environment (os.getenv) without a comment that says why"]
    assert environment_offences(commented, "s", allowed=False)[0] == (
        "s:3 reads the environment (os.environ): use shared.config.Settings")
