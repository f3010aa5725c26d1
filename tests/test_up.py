"""`voxq up` as a user runs it: one command, the whole cluster, its own Redis, and no process that
outlives it; a line that says when it is ready; a two-stage Ctrl-C that never loses a job and says
so; `voxq status` against it, from any folder."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest
import redis
import requests

from shared.store import keyspace
from tests.support import ROOT, free_port

LONG = "随着人工智能技术的快速发展，越来越多的企业开始使用智能语音助手。" * 12


def children_of(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def up_env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for name in ("REDIS_URL", "FLOWER_BASIC_AUTH", "VOXQ_DATA_DIR"):
        env.pop(name, None)
    return env


class Up:
    """A `voxq up` process and what it printed."""

    def __init__(self, data_dir, workers: int = 1):
        self.port, self.flower_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voxq", "up", "--port", str(self.port), "--flower-port", str(self.flower_port),
             "--workers", str(workers), "--data-dir", str(data_dir)],
            cwd=ROOT, env=up_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.banner = "".join(self.proc.stdout.readline() for _ in range(7))
        self.banner_at = time.monotonic()

    def wait_ready(self) -> float:
        """Until `voxq up` says it is ready (the test's timeout bounds the wait); the seconds
        from the banner to that line, which must be true when it comes."""
        said = ""
        while not (line := self.proc.stdout.readline()).startswith("voxq is ready"):
            assert line, self.banner + said  # it exited without ever saying so
            said += line
        took = time.monotonic() - self.banner_at
        assert line.startswith(f"voxq is ready: {self.base}/ ("), line
        assert requests.get(f"{self.base}/readyz", timeout=5).status_code == 200, line
        print(f"ready line {took:.1f} s after the banner")
        return took

    def job(self, job_id: str) -> dict:
        return requests.get(f"{self.base}/v1/jobs/{job_id}", timeout=10).json()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def voxq(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "voxq", *args], cwd=kwargs.pop("cwd", ROOT), env=up_env(),
                          capture_output=True, text=True, timeout=60, **kwargs)


def wait_gone(processes: list[psutil.Process], timeout: float = 40) -> None:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    assert not alive, [(p.pid, p.cmdline()) for p in alive if p.is_running()]


@pytest.mark.slow
def test_up_private_redis_status_two_stage_stop_requeue_and_no_orphans(tmp_path, monkeypatch):
    data = tmp_path / "data"
    elsewhere = tmp_path / "elsewhere"  # a folder with no ./data, as a user's home would be
    elsewhere.mkdir()
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    first = Up(data)
    try:
        # Its own Redis in the data directory, never whatever listens on 6379; the banner says so.
        assert "private redis-server on 127.0.0.1:" in first.banner, first.banner
        assert ":6379" not in first.banner
        # The banner comes before any worker has loaded the voice: it says a line will follow.
        assert 'a "voxq is ready" line says so' in first.banner.splitlines()[0], first.banner
        assert (data / "redis" / "redis.conf").stat().st_mode & 0o077 == 0
        first.wait_ready()
        children = children_of(first.proc.pid)
        assert len(children) >= 5  # redis, gunicorn, worker, webhooks worker, flower (and their children)
        login = re.search(r"login (\S+):(\S+)", first.banner)
        # No password of Flower or Redis on any command line, where `ps` shows it to every local user.
        state = json.loads((data / "up.json").read_text())
        redis_password = redis.Redis.from_url(state["redis_url"]).connection_pool.connection_kwargs["password"]
        for child in children:
            line = " ".join(child.cmdline())
            assert login[2] not in line and redis_password not in line, line
        flower = f"http://127.0.0.1:{first.flower_port}/"
        deadline = time.time() + 30
        while True:
            try:
                assert requests.get(flower, timeout=5).status_code == 401
                break
            except requests.ConnectionError:
                assert time.time() < deadline, "Flower never answered"
                time.sleep(0.2)
        assert requests.get(flower, auth=(login[1], login[2]), timeout=5).status_code == 200

        # One data directory, one cluster: a second `voxq up` refuses in one line.
        second = voxq("up", "--port", str(free_port()), "--flower-port", str(free_port()),
                      "--data-dir", str(data))
        assert second.returncode == 2
        assert f"another `voxq up` (pid {first.proc.pid}) is using {data}" in second.stderr
        assert "Traceback" not in second.stderr

        job = requests.post(f"{first.base}/v1/jobs", json={"text": LONG}, timeout=10).json()
        deadline = time.time() + 120
        while not ((body := first.job(job["id"]))["status"] == "running" and body["progress"]["segments_done"] >= 1):
            assert time.time() < deadline, body
            time.sleep(0.1)
        # From any folder, with no --data-dir: `voxq up` recorded itself in XDG_STATE_HOME.
        status = voxq("status", cwd=elsewhere)
        assert status.returncode == 0 and status.stderr == "", status.stderr
        assert "(private, started by voxq up)" in status.stdout and redis_password not in status.stdout
        assert f"data in {data}" in status.stdout, status.stdout
        assert re.search(r"workers\s+2 alive", status.stdout), status.stdout
        assert re.search(r"interactive \d+ · batch 0", status.stdout), status.stdout  # the job's later chunks
        # 13: the first sentence is cut after its first clause, so the first audio comes sooner.
        assert re.search(rf"in flight\s+1 job\(s\):\n\s+{job['id']}\s+interactive\s+running, \d+/13 segments",
                         status.stdout), status.stdout

        # Ctrl-C says what it waits for: the chunk being spoken, not the job, whose rest waits for
        # the next start. A second one stops at once (the workers are killed), and the job goes back
        # to the queue; the last line says it stopped.
        first.proc.send_signal(signal.SIGINT)
        said = first.proc.stdout.readline()
        assert said.strip() == ("voxq: stopping: the workers finish the chunk they are speaking; the rest of the "
                                "job in flight resumes on the next start (Ctrl-C again stops at once)"), said
        started = time.monotonic()
        first.proc.send_signal(signal.SIGINT)
        assert first.proc.wait(60) == 0
        took = time.monotonic() - started
        print(f"second Ctrl-C to exit: {took:.2f} s")
        # Killing the workers takes no time; what is left is gunicorn's quick exit and Redis's
        # last write (0.9 s measured on 2 loaded cores; Celery's cold shutdown took 2.4 to 4 s).
        assert took < 4, took
        rest = first.proc.stdout.read().splitlines()
        assert rest[0] == ("voxq: stopping at once; the chunks being spoken are cut off and spoken again "
                           "on the next start"), rest
        assert re.fullmatch(r"voxq: stopped in \d+\.\d s; 1 unfinished job resumes on the next start", rest[-1]), rest
        wait_gone(children)
        gone = voxq("status", "--data-dir", str(data))
        assert gone.returncode == 2 and "no running `voxq up` found" in gone.stderr
        # A clean stop takes its record along: nothing stale is left to report.
        assert not list((tmp_path / "state" / "voxq" / "clusters").iterdir())
    finally:
        first.kill()

    again = Up(data)
    try:
        again.wait_ready()
        deadline = time.time() + 180
        while (body := again.job(job["id"]))["status"] in ("queued", "running"):
            assert time.time() < deadline, body
            time.sleep(0.2)
        assert body["status"] == "succeeded", body
        state = json.loads((data / "up.json").read_text())
        record = redis.Redis.from_url(state["redis_url"], decode_responses=True).hgetall(keyspace.job(job["id"]))
        # Requeued, not lost, and nothing run more than once again: the chunk the kill cut short
        # (if it fell mid-chunk, not between two) ran a second time, every other piece once.
        runs = [int(v) for k, v in record.items() if k == "attempts" or k.startswith("chunk_attempts:")]
        assert runs and set(runs) <= {1, 2} and runs.count(2) <= 2, sorted(record.items())
        children = children_of(again.proc.pid)
        # SIGKILL gives `voxq up` no chance to clean up: the parent-death signal stops every child.
        again.proc.kill()
        again.proc.wait(10)
        wait_gone(children)
        # Its record is left behind, stale: ignored, and said so.
        stale = voxq("status", cwd=elsewhere)
        assert stale.returncode == 2, stale.stderr
        assert (f"ignoring a stale record in {tmp_path / 'state' / 'voxq'}: the `voxq up` of {data} "
                f"(pid {again.proc.pid}) is no longer running") in stale.stderr, stale.stderr
        assert "no running `voxq up` found in" in stale.stderr
    finally:
        again.kill()


def test_up_refuses_a_public_bind_without_keys(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXQ_API_KEYS")}
    run = subprocess.run([sys.executable, "-m", "voxq", "up", "--host", "0.0.0.0", "--data-dir", str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "refusing to bind 0.0.0.0 without API keys" in run.stderr
    assert "Traceback" not in run.stderr


def test_up_with_a_given_redis_that_does_not_answer_says_so(tmp_path):
    run = voxq("up", "--data-dir", str(tmp_path), "--redis-url", "redis://127.0.0.1:1/0")
    assert run.returncode == 2
    assert run.stderr.strip() == "voxq: error: Redis at redis://127.0.0.1:1/0 does not answer"


def test_status_without_a_cluster_is_one_line(tmp_path):
    run = voxq("status", "--data-dir", str(tmp_path))
    assert run.returncode == 2
    assert run.stderr.strip() == (f"voxq: error: no running `voxq up` found in {tmp_path}: "
                                  "give --data-dir, --redis-url or REDIS_URL")


def test_status_against_a_redis(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.zadd(keyspace.WORKERS, {"cpu@host": time.time()})
    client.hset(keyspace.WORKER_QUEUES, "cpu@host", json.dumps(["batch", "interactive"]))
    client.rpush("batch", "x", "y")
    run = voxq("status", "--redis-url", redis_url)
    assert run.returncode == 0, run.stderr
    assert re.search(r"workers\s+1 alive:\n\s+cpu@host\s+\(batch, interactive\)", run.stdout), run.stdout
    assert "batch 2" in run.stdout
    assert re.search(r"in flight\s+0 job\(s\)", run.stdout)


def test_status_finds_a_recorded_cluster_from_any_folder_and_ignores_stale_records(redis_url, tmp_path, monkeypatch):
    from voxq import datadir, registry

    state_dir = tmp_path / "state" / "voxq"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    live, dead, elsewhere = tmp_path / "live", tmp_path / "dead", tmp_path / "elsewhere"
    elsewhere.mkdir()
    # A running `voxq up` is one that holds its data directory's lock: this process holds one for real.
    held = datadir.lock(live)
    datadir.write_state(live, {"pid": os.getpid(), "started": time.time(), "redis_url": redis_url,
                               "data_dir": str(live)})
    registry.record(state_dir, live, os.getpid())
    # A killed one leaves its state and its record, and no lock.
    dead.mkdir()
    datadir.write_state(dead, {"pid": 999_999, "redis_url": "redis://127.0.0.1:1/0", "data_dir": str(dead)})
    registry.record(state_dir, dead, 999_999)
    assert (state_dir / "clusters").stat().st_mode & 0o077 == 0

    found = voxq("status", cwd=elsewhere)
    assert found.returncode == 0, found.stderr
    assert f"data in {live}" in found.stdout and re.search(r"workers\s+0 alive", found.stdout), found.stdout
    assert found.stderr == (f"voxq: ignoring a stale record in {state_dir}: the `voxq up` of {dead} "
                            "(pid 999999) is no longer running\n")
    # Said once: the stale record is gone, the live one stays.
    assert voxq("status", cwd=elsewhere).stderr == ""
    # An explicit --data-dir means that one only.
    only = voxq("status", "--data-dir", str(dead), cwd=elsewhere)
    assert only.returncode == 2 and f"no running `voxq up` found in {dead}:" in only.stderr

    held.close()  # what the kernel does when `voxq up` dies
    gone = voxq("status", cwd=elsewhere)
    assert gone.returncode == 2
    assert gone.stderr.splitlines() == [
        f"voxq: ignoring a stale record in {state_dir}: the `voxq up` of {live} (pid {os.getpid()}) is no "
        "longer running",
        f"voxq: error: no running `voxq up` found in {elsewhere / 'data'}, nor recorded in {state_dir}: give "
        "--data-dir, --redis-url or REDIS_URL"]


def test_up_with_a_data_dir_it_cannot_write_says_so_before_starting(tmp_path):
    readonly = tmp_path / "ro"
    readonly.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(readonly)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here ({mounted.stderr.strip()}); root ignores permissions")
    try:
        run = voxq("up", "--data-dir", str(readonly / "data"))
    finally:
        subprocess.run(["umount", "-l", str(readonly)], check=False)
    assert run.returncode == 2
    assert run.stderr.strip() == (f"voxq: error: the data directory {readonly / 'data'} cannot be written "
                                  "(Read-only file system); give a writable one with --data-dir or VOXQ_DATA_DIR")
    assert run.stdout == ""  # nothing started: no "voxq is starting"


def test_up_with_an_unknown_engine_says_so_before_starting(tmp_path):
    run = subprocess.run([sys.executable, "-m", "voxq", "up", "--data-dir", str(tmp_path / "data")], cwd=ROOT,
                         env=dict(up_env(), VOXQ_ENGINE="festival"), capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert re.fullmatch(r"voxq: error: the workers cannot start: unknown engine 'festival'; available: .*fastspeech2-litert.*",
                        run.stderr.strip()), run.stderr
    assert run.stdout == "" and not (tmp_path / "data" / "logs").exists()  # no child was started


def test_supervisor_keeps_the_api_up_while_a_child_dies_because_redis_refuses_writes(tmp_path, redis_url, monkeypatch,
                                                                                      capsys):
    import threading

    from shared.store import write_problem
    from voxq import supervisor

    monkeypatch.setattr(supervisor, "RESTART_FIRST_S", 0.05)
    monkeypatch.setattr(supervisor, "RESTART_MAX_S", 0.2)
    client = redis.Redis.from_url(redis_url)
    client.config_set("maxmemory", 1)  # at maxmemory: every write answers OOM
    try:
        watcher = supervisor.Supervisor(tmp_path / "logs", excuse=lambda: write_problem(redis_url))
        api = watcher.spawn("api", [sys.executable, "-c", "import time; time.sleep(60)"], os.environ)
        # What a worker did: exit at once on a refused write.
        watcher.spawn("webhooks", [sys.executable, "-c", "raise SystemExit(1)"], os.environ)
        result = []
        thread = threading.Thread(target=lambda: result.append(watcher.watch()), daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while "not stopping the cluster" not in (said := capsys.readouterr().err):
            assert time.monotonic() < deadline and thread.is_alive(), (said, result)
            time.sleep(0.05)
        assert "webhooks died 5 times in a row" in said and "Redis refuses writes" in said, said
        assert "the API stays up" in said
        time.sleep(1)  # it keeps restarting the child rather than stopping: still watching
        assert thread.is_alive() and not result and api.poll() is None
    finally:
        client.config_set("maxmemory", 0)
    # Once Redis takes writes again, a crash loop is a crash loop: the cluster stops, saying so.
    thread.join(20)
    for _, proc in watcher.children:
        proc.kill()
        proc.wait(10)
    assert result == [1]
    assert "a crash loop, so stopping the cluster" in capsys.readouterr().err
