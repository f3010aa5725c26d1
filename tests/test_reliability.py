"""Faults caused for real: a worker SIGKILLed mid-job, and Redis going away."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis

from tests.chaos import Ledger, text_of
from tests.support import FINISHED, ROOT, RedisServer, Worker, free_port, quiet, wait_for, wait_until, worker_env

LONG = "随着人工智能技术的快速发展，越来越多的企业开始使用智能语音助手。" * 12


def wait_running(client, job_id, timeout=60, chunks_done=1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        body = client.get(f"/v1/jobs/{job_id}").get_json()
        if body["status"] == "running" and body["progress"]["chunks_done"] >= chunks_done:
            return body
        time.sleep(0.05)
    raise AssertionError("job never started")


@pytest.mark.slow
def test_worker_killed_mid_job_job_finishes_exactly_once(client, redis_url, data_dir, tmp_path):
    # A short visibility timeout, so Redis hands the unacknowledged job to the surviving worker.
    first = Worker(redis_url, data_dir, tmp_path / "w1.log", name="w1", VOXQ_VISIBILITY_TIMEOUT_S=5)
    first.wait_ready()
    job = client.post("/v1/jobs", json={"text": LONG}).get_json()
    wait_running(client, job["id"], chunks_done=2)
    # Kill it while it speaks a chunk: once the next chunk has started and not yet landed.
    store = client.application.extensions["voxq"].store
    deadline = time.time() + 60
    while not ((started := store.chunks.attempts(job["id"])).keys() - store.chunks.landed(job["id"])):
        assert time.time() < deadline, started
        time.sleep(0.01)
    landed = store.chunks.landed(job["id"])
    first.kill()  # SIGKILL to the whole worker: no ack, no cleanup, no goodbye
    second = Worker(redis_url, data_dir, tmp_path / "w2.log", name="w2", VOXQ_VISIBILITY_TIMEOUT_S=5)
    try:
        done = wait_for(client, job["id"], timeout=180)
        assert done["status"] == "succeeded", done
        # Only the interrupted chunk ran again: the chunks that had landed were kept, not redone.
        attempts = store.chunks.attempts(job["id"])
        assert done["progress"]["chunks_total"] == len(attempts) >= 4, (done["progress"], attempts)
        assert sorted(attempts.values()).count(2) == 1 and set(attempts.values()) == {1, 2}, attempts
        assert all(attempts[i] == 1 for i in landed), attempts
        # Exactly once: one audio file, no temp files left by the killed attempt's successor.
        files = sorted(p.name for p in data_dir.rglob("*") if p.is_file())
        assert files == [f"{job['id']}.wav"], files
        log = (tmp_path / "w2.log").read_text()
        assert log.count(f"job {job['id']} succeeded") == 1
    finally:
        second.stop()


@pytest.mark.slow
def test_poison_job_fails_after_max_attempts(client, redis_url, data_dir, tmp_path):
    worker = Worker(redis_url, data_dir, tmp_path / "w.log", VOXQ_VISIBILITY_TIMEOUT_S=3, VOXQ_MAX_ATTEMPTS=1)
    worker.wait_ready()
    job = client.post("/v1/jobs", json={"text": LONG}).get_json()
    wait_running(client, job["id"])
    store = client.application.extensions["voxq"].store
    deadline = time.time() + 60
    while not (store.chunks.attempts(job["id"]).keys() - store.chunks.landed(job["id"])):
        assert time.time() < deadline
        time.sleep(0.01)  # killed while it speaks a chunk, not between two
    worker.kill()
    again = Worker(redis_url, data_dir, tmp_path / "w2.log", VOXQ_VISIBILITY_TIMEOUT_S=3, VOXQ_MAX_ATTEMPTS=1)
    try:
        done = wait_for(client, job["id"], timeout=120)
        assert done["status"] == "failed"
        assert done["error"]["code"] == "worker_lost"
    finally:
        again.stop()


def test_a_step_run_again_after_a_redis_outage_is_no_new_attempt(redis_url, data_dir, engine):
    # A failover refuses a task's writes once for each pooled connection still on the old master,
    # and worker/tasks.py runs the step again each time: one live delivery, however many runs.
    # With one attempt allowed, each job below fails `worker_lost` only on a second delivery.
    from shared.config import Settings
    from shared.jobs import JobRequest
    from shared.storage import Storage
    from shared.store import Store
    from worker.runner import Counted, Runner

    settings = Settings.load(redis_url=redis_url, data_dir=data_dir, jobs={"max_attempts": 1})
    store = Store(redis.Redis.from_url(redis_url, decode_responses=True), result_ttl_s=600)
    runner = Runner(settings, store, Storage(data_dir), engine, notify=lambda job_id: None,
                    publish=lambda *args: None)
    speak, refusals = runner.pipeline.speak_into, [0]

    def refused_while(times: int):
        def speak_into(*args, **kwargs):
            if refusals[0] < times:
                refusals[0] += 1
                raise redis.ConnectionError("NOREPLICAS")  # what a stale master's refusal raises (Transient)
            return speak(*args, **kwargs)
        refusals[0] = 0
        runner.pipeline.speak_into = speak_into

    job_id = store.jobs.create(JobRequest(text="第一位客户您好。"), "acme").id
    refused_while(3)
    counted = Counted()
    for fresh in (True, False, False):
        with pytest.raises(redis.ConnectionError):
            runner.run(job_id, fresh=fresh, counted=counted)
    assert runner.run(job_id, counted=counted) == "succeeded"
    assert store.jobs.get(job_id).attempts == 1
    assert store.chunks.attempts(job_id) == {0: 4}  # every run its own temporaries, all one delivery

    other = store.jobs.create(JobRequest(text="第二位客户您好。"), "acme").id
    refused_while(1)
    with pytest.raises(redis.ConnectionError):
        runner.run(other, fresh=True, counted=Counted())
    # The broker hands the message back (its worker died): that is a second delivery.
    assert runner.run(other, counted=Counted()) == "failed"
    assert store.jobs.get(other).error.code == "worker_lost"


def test_redis_down_answers_503_quickly(tmp_path):
    from api.app import create_app

    server = RedisServer(tmp_path)
    app = create_app({"TESTING": True, "VOXQ_SETTINGS": {"redis_url": server.url, "data_dir": tmp_path}})
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    server.stop()
    for method, path, kwargs in (("get", "/readyz", {}), ("post", "/v1/jobs", {"json": {"text": "你好"}}),
                                 ("get", "/v1/jobs/0123456789abcdef0123456789abcdef", {})):
        started = time.perf_counter()
        response = getattr(client, method)(path, **kwargs)
        elapsed = time.perf_counter() - started
        assert response.status_code == 503, (path, response.data)
        assert response.get_json()["error"]["code"] == "unavailable"
        assert elapsed < 3, f"{path} took {elapsed:.1f} s"
    assert client.get("/healthz").status_code == 200


# --- Hangs, full disks and a Redis that refuses writes (issue 24) ---------------------------------
# One set of real processes for all of them, started once: two worker nodes (A and B, one pool
# process each), the webhooks worker and Flower, over a Redis whose append-only file is on a small
# tmpfs of its own, with the audio on another. Short bounds: a lease of 4 s, 3 s chunks, a hang
# bound of 10 s plus twice a chunk's expected audio, and a chunk timeout of 30 s (above the hang
# bound, so the hung-process scenario sees the time limit act, not the redispatch), the net for a
# message lost with a paused consumer.
NODE_ENV = {"VOXQ_VISIBILITY_TIMEOUT_S": "4", "VOXQ_HEARTBEAT_TTL_S": "4", "VOXQ_CHUNK_S": "3",
            "VOXQ_FIRST_CHUNK_S": "1", "VOXQ_HANG_MIN_S": "10", "VOXQ_HANG_FACTOR": "2", "VOXQ_MAX_ATTEMPTS": "5",
            "VOXQ_CHUNK_TIMEOUT_S": "30"}


class Tmpfs:
    """A small tmpfs mounted on `path` (as root), so "the disk is full" is real."""

    def __init__(self, path: Path, size: str):
        path.mkdir(parents=True, exist_ok=True)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): the full-disk scenarios need one")
        self.path = path
        self.balloon = path / "balloon"

    def fill(self, leave: int = 0) -> None:
        """Take all the space but `leave` bytes."""
        free = shutil.disk_usage(self.path).free
        with open(self.balloon, "ab", buffering=0) as out:
            try:
                out.write(b"\0" * max(0, free - leave))
            except OSError:
                pass  # full: what was asked

    def empty(self) -> None:
        self.balloon.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


class Nodes:
    """The shared processes, the API (a test client) over them, and a view for the chaos ledger."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.started: list = []
        try:
            self._start(workdir)
        except BaseException:
            self.stop()
            raise

    def _start(self, workdir: Path) -> None:
        from api.app import create_app

        self.redis_disk = Tmpfs(workdir / "redis", "8m")
        self.started.append(self.redis_disk)
        self.disk = Tmpfs(workdir / "data", "24m")
        self.started.append(self.disk)
        self.data_dir = self.disk.path
        self.port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.port}/0"
        self.redis_proc = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.redis_disk.path), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
             "--logfile", str(workdir / "redis.log")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.started.append(self.redis_proc)
        self.redis = redis.Redis.from_url(self.redis_url, decode_responses=True)
        wait_until(lambda: _pings(self.redis), 10, what="redis-server")
        self.a = Worker(self.redis_url, self.data_dir, workdir / "a.log", name="a", **NODE_ENV)
        self.started.append(self.a)
        self.b = Worker(self.redis_url, self.data_dir, workdir / "b.log", name="b", **NODE_ENV)
        self.started.append(self.b)
        self.hooks = Worker(self.redis_url, self.data_dir, workdir / "hooks.log", queues="webhooks", pool="threads",
                            concurrency=2, name="hooks", **NODE_ENV)
        self.started.append(self.hooks)
        flower_env = worker_env(self.redis_url, self.data_dir, CELERY_BROKER_URL=self.redis_url,
                                FLOWER_BASIC_AUTH="admin:chaos")
        self.flower = subprocess.Popen(
            [sys.executable, "-m", "celery", "flower", "--address=127.0.0.1", f"--port={free_port()}"],
            cwd=ROOT, env=flower_env, stdout=open(workdir / "flower.log", "ab"), stderr=subprocess.STDOUT,
            start_new_session=True)
        self.started.append(self.flower)
        self.app = create_app({"TESTING": True, "VOXQ_SETTINGS": {
            "redis_url": self.redis_url, "data_dir": self.data_dir,
            "jobs": {"heartbeat_ttl_s": 4, "hang_min_s": 10, "hang_factor": 2}}})
        self.client = self.app.test_client()
        self.a.wait_ready()
        self.b.wait_ready()
        # Both pool processes and the webhooks worker (a threads pool beats from its main).
        wait_until(lambda: len(self.store.workers.alive(4)) >= 3, 60, 0.1, "both nodes' pool processes beat")

    @property
    def store(self):
        return self.app.extensions["voxq"].store

    def job(self, job_id: str) -> dict:
        body = self.client.get(f"/v1/jobs/{job_id}").get_json()
        return body if "status" in body else {"status": "missing"}

    def submit(self, text: str) -> str:
        response = self.client.post("/v1/jobs", json={"text": text})
        assert response.status_code == 202, response.get_json()
        return response.get_json()["id"]

    def processes(self) -> dict[str, subprocess.Popen]:
        return {"worker a": self.a.proc, "worker b": self.b.proc, "webhooks": self.hooks.proc, "flower": self.flower}

    def speaking(self, job_id: str) -> list[int]:
        """The job's chunks started and not landed: being spoken now."""
        chunks = self.store.chunks
        return sorted(chunks.attempts(job_id).keys() - chunks.landed(job_id))

    def consuming(self, node: Worker, on: bool) -> None:
        """Have a node take messages from the synthesis queues, or not (Celery's remote control)."""
        control = self.app.extensions["voxq"].celery.control
        for queue in ("interactive", "batch"):
            if on:
                replies = control.add_consumer(queue, destination=[node.name], reply=True, timeout=5)
            else:
                replies = control.cancel_consumer(queue, destination=[node.name], reply=True, timeout=5)
            assert replies, f"{node.name} did not answer"

    def files_of(self, job_id: str) -> list[str]:
        return sorted(p.name for p in (self.data_dir / "audio").glob(f"*/*{job_id}*"))

    def counters_within_totals(self, job_id: str) -> bool:
        progress = self.job(job_id)["progress"]
        return (progress["chunks_done"] <= (progress["chunks_total"] or 0)
                and progress["segments_done"] <= (progress["segments_total"] or 0))

    def stop(self) -> None:
        """Everything started, last first (also after a start that failed half way)."""
        for part in reversed(self.started):
            if isinstance(part, Worker):
                part.kill()  # the whole group, stopped or not: nothing of theirs is kept
            elif isinstance(part, Tmpfs):
                part.unmount()
            else:
                part.terminate()
                part.wait(30)


def _gone(process: psutil.Process) -> bool:
    """Ended: no longer running, or a zombie its parent has yet to reap."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="module")
def shared_nodes(tmp_path_factory):
    made = Nodes(tmp_path_factory.mktemp("nodes"))
    yield made
    made.stop()


@pytest.fixture
def nodes(shared_nodes):
    """The shared nodes once the last test's work is all done and every pool process is back."""
    def calm():
        return quiet(shared_nodes.redis_url) and len(shared_nodes.store.workers.alive(4)) >= 3
    wait_until(calm, 60, 0.1, "the nodes idle")
    return shared_nodes


def _catch_mid_chunk(nodes: Nodes, text: str, stop, first: int = 0) -> tuple[str, int]:
    """Submit `text` and call `stop` while node A speaks one of its chunks (index `first` or
    later): (the job, that chunk). Node B is stopped from before the submit until then, so the
    chunk being spoken is A's. (Not by SIGSTOP: a stopped node blocked in BRPOP still takes
    the next message off the queue, and holds it until it resumes.)"""
    nodes.consuming(nodes.b, False)
    try:
        job_id = nodes.submit(text)

        def caught():
            speaking = [index for index in nodes.speaking(job_id) if index >= first]
            if speaking:
                stop()
                return [speaking[0]]  # a list: chunk 0 is a chunk too
            assert nodes.job(job_id)["status"] in ("queued", "running"), "A never spoke a chunk of it"
            return None

        return job_id, wait_until(caught, 60, 0.005, "node A speaking a chunk")[0]
    finally:
        nodes.consuming(nodes.b, True)


def _stop_node_mid_chunk(nodes: Nodes, text: str, first: int = 0) -> tuple[str, int]:
    """SIGSTOP node A, its main and its pool, while it speaks a chunk: no lease renewal."""
    return _catch_mid_chunk(nodes, text, lambda: os.killpg(nodes.a.proc.pid, signal.SIGSTOP), first)


def _ended(log: Path, job_id: str, chunk: int) -> bool:
    """Whether node A's task for that chunk has ended (or its process was ended for the bound)."""
    text = log.read_text()
    return bool(re.search(rf"job {job_id} [^\n]*spoke chunk {chunk}: ", text))


@pytest.mark.slow
def test_a_paused_node_resumes_after_its_chunk_landed_and_after_its_job_ended(nodes):
    ledger = Ledger("paused-node")
    # 1. Paused mid-chunk; the chunk runs again on B and lands; A resumes while the job still runs.
    # Long enough that B is still speaking the rest when A's chunk lands (after A's lease, 4 s).
    running, chunk = _stop_node_mid_chunk(nodes, LONG * 2, first=1)
    ledger.accept(running)
    stopped = time.monotonic()
    wait_until(lambda: chunk in nodes.store.chunks.landed(running) or nodes.job(running)["status"] in FINISHED,
               60, 0.02, "B landing A's chunk")
    paused_1 = time.monotonic() - stopped
    status_at_resume = nodes.job(running)["status"]
    os.killpg(nodes.a.proc.pid, signal.SIGCONT)
    # 2. Paused mid-chunk until its whole job has ended (B spoke the rest, assembled it and removed
    # every temporary, A's too): a late duplicate.
    short, chunk_2 = _stop_node_mid_chunk(nodes, text_of(3) + text_of(2))
    ledger.accept(short)
    stopped = time.monotonic()
    wait_until(lambda: nodes.job(short)["status"] in FINISHED, 60, 0.1, "B finishing the job alone")
    paused_2 = time.monotonic() - stopped
    os.killpg(nodes.a.proc.pid, signal.SIGCONT)
    ledger.settle(nodes, timeout=120)
    # A's two attempts end: each discards its audio, counts nothing and leaves no file.
    log = nodes.a.log_path
    wait_until(lambda: _ended(log, running, chunk) and _ended(log, short, chunk_2) and quiet(nodes.redis_url),
               60, 0.2, "A's late attempts ending")
    ledger.summary(paused_s=[round(paused_1, 1), round(paused_2, 1)], chunks_caught=[chunk, chunk_2],
                   job_at_first_resume=status_at_resume)
    assert status_at_resume == "running"  # the first pause is the one that ends before its job
    assert ledger.not_succeeded == 0, ledger.jobs
    assert ledger.run_twice == 0, {j: f["renders"] for j, f in ledger.jobs.items()}
    for job_id in (running, short):
        assert nodes.counters_within_totals(job_id), nodes.job(job_id)["progress"]
        progress = nodes.job(job_id)["progress"]
        assert progress["chunks_done"] == progress["chunks_total"], progress
        assert nodes.files_of(job_id) == [f"{job_id}.wav"], nodes.files_of(job_id)
    assert "engine_error" not in log.read_text()
    # Node A works on: its next job is spoken as usual.
    again = nodes.submit("暂停之后，节点继续工作。")
    assert wait_for(nodes.client, again, 60)["status"] == "succeeded"


@pytest.mark.slow
def test_a_hung_pool_process_is_ended_within_its_hang_bound(nodes):
    from shared.config import Settings

    ledger = Ledger("hung-child")
    child = psutil.Process(nodes.a.proc.pid).children()[0]
    # A later chunk (the first task's bound also covers planning); its main goes on renewing the
    # lease, so only the hang bound ends it.
    job_id, chunk = _catch_mid_chunk(nodes, LONG, lambda: child.send_signal(signal.SIGSTOP), first=1)
    ledger.accept(job_id)
    stopped = time.monotonic()
    expected = nodes.store.chunks.expected_s(job_id, chunk)
    bound = Settings.load(jobs={"hang_min_s": 10, "hang_factor": 2}).jobs.hang_bound_s(expected)
    wait_until(lambda: chunk in nodes.store.chunks.landed(job_id) or nodes.job(job_id)["status"] in FINISHED,
               bound + 30, 0.05, "the hung chunk landing")
    landed_after = time.monotonic() - stopped
    ledger.settle(nodes, timeout=120)
    ledger.summary(hang_bound_s=bound, chunk_landed_after_s=round(landed_after, 1),
                   chunk_timeout_s=int(NODE_ENV["VOXQ_CHUNK_TIMEOUT_S"]), hung_child_killed=_gone(child))
    assert ledger.not_succeeded == 0 and ledger.run_twice == 0, ledger.jobs
    assert _gone(child)  # killed, not left stopped
    # Not before the bound (its main renews its lease), and soon after it, not at the chunk timeout.
    assert bound - 2 <= landed_after <= bound + 20, (bound, landed_after)
    assert "Hard time limit" in nodes.a.log_path.read_text()
    assert nodes.files_of(job_id) == [f"{job_id}.wav"], nodes.files_of(job_id)


@pytest.mark.slow
def test_a_full_disk_fails_jobs_with_a_storage_error_cleans_up_and_recovers(nodes):
    ledger = Ledger("full-disk")
    nodes.disk.fill(leave=32 * 1024)  # room for a chunk's first writes, not for a chunk
    ready = nodes.client.get("/readyz").get_json()
    # A text never spoken here before: a cached result would need no room.
    job_id = nodes.submit("磁盘满了的时候，" + text_of(4) + text_of(3))
    ledger.accept(job_id)
    done = wait_for(nodes.client, job_id, 60)
    assert done["status"] == "failed", done
    leftovers = nodes.files_of(job_id)
    nodes.disk.empty()
    after = nodes.submit("磁盘有空间以后，" + text_of(4))
    ledger.accept(after)
    ledger.settle(nodes, timeout=60)
    ready_after = nodes.client.get("/readyz").get_json()
    ledger.summary(readyz_full=ready["storage"], error=done["error"]["message"][:80], leftovers=len(leftovers))
    assert ready["status"] == "degraded" and not ready["storage"]["writable"], ready
    assert "is full" in ready["storage"]["problem"]
    assert done["error"]["code"] == "storage_error" and "is full" in done["error"]["message"], done["error"]
    assert leftovers == [], leftovers  # its partial chunks went, so the disk did not stay full
    assert ledger.failed == {"storage_error": 1} and ledger.jobs[after]["status"] == "succeeded", ledger.jobs
    assert ready_after["status"] == "ready" and ready_after["storage"]["writable"], ready_after
    assert nodes.files_of(after) == [f"{after}.wav"]


@pytest.mark.slow
def test_a_redis_that_refuses_writes_is_waited_out(nodes):
    ledger = Ledger("redis-refuses-writes")
    before = {name: proc.pid for name, proc in nodes.processes().items()}
    refused: dict[str, int] = {}
    for phase in ("misconf", "maxmemory"):
        for n in range(3):
            ledger.accept(nodes.submit(text_of(n + 1)))
        if phase == "misconf":
            nodes.redis_disk.fill()  # its append-only file cannot grow: MISCONF for every write
        else:
            nodes.redis.config_set("maxmemory", max(1, nodes.redis.info("memory")["used_memory"] // 2))

        def refusing():
            code = nodes.client.post("/v1/jobs", json={"text": "你好。"}).status_code
            return code == 503

        wait_until(refusing, 20, 0.2, f"Redis refusing writes ({phase})")
        refused[phase] = 503
        time.sleep(6)  # the fault's length, not a wait for a condition: longer than a lease (4 s)
        alive = {name: proc.poll() is None for name, proc in nodes.processes().items()}
        assert all(alive.values()), alive
        if phase == "misconf":
            nodes.redis_disk.empty()
        else:
            nodes.redis.config_set("maxmemory", 0)
    took = ledger.settle(nodes, timeout=120)
    ledger.summary(api_during=refused, settled_after_s=round(took, 1),
                   processes_survived=before == {name: proc.pid for name, proc in nodes.processes().items()})
    assert all(proc.poll() is None for proc in nodes.processes().values())
    assert ledger.not_succeeded == 0 and ledger.run_twice == 0, ledger.jobs
    assert nodes.client.post("/v1/jobs", json={"text": "恢复了。"}).status_code == 202
