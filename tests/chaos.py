"""The chaos suite's cluster and ledger: `voxq up` run the way a user runs it, faults caused for
real, and a record of every accepted job (terminal state, times each chunk ran to success)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis
import requests

from shared.store import keyspace
from tests.support import ROOT, free_port

TERMINAL = ("succeeded", "failed", "canceled")
# Small chunks and short leases, so a few sentences are several chunks and recovery is quick.
CHAOS_ENV = {
    "VOXQ_VISIBILITY_TIMEOUT_S": "6",
    "VOXQ_HEARTBEAT_TTL_S": "4",
    "VOXQ_CHUNK_S": "3",
    "VOXQ_FIRST_CHUNK_S": "1",
    # A chunk whose message was lost (its dispatcher killed before publishing it, or its worker
    # killed between taking it and recording it unacknowledged) goes out again after this.
    "VOXQ_CHUNK_TIMEOUT_S": "45",
    "VOXQ_STOP_GRACE_S": "20",
    "VOXQ_RATE_LIMIT_PER_MINUTE": "0",
}
SENTENCES = ["今天天气很好。", "我们一起去公园散步吧！", "请在2024年3月15日10:30之前提交报告。",
             "价格是¥12.5，折扣50%。", "人工智能正在改变世界，越来越多的企业开始使用语音助手。"]


def text_of(n: int) -> str:
    return "".join(SENTENCES[(n + i) % len(SENTENCES)] for i in range(1 + n % 4))


class UpCluster:
    """`voxq up` with its own data directory; env overrides on top of CHAOS_ENV."""

    def __init__(self, data_dir: Path, workers: int = 2, redis_url: str | None = None, args: tuple = (), **env):
        self.data_dir = data_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        full = {**os.environ, "PYTHONUNBUFFERED": "1", **CHAOS_ENV, **env}  # env overrides CHAOS_ENV
        for name in ("REDIS_URL", "FLOWER_BASIC_AUTH", "VOXQ_DATA_DIR"):
            full.pop(name, None)
        cmd = [sys.executable, "-m", "voxq", "up", "--port", str(self.port), "--flower-port", str(free_port()),
               "--workers", str(workers), "--data-dir", str(data_dir)]
        if redis_url:
            cmd += ["--redis-url", redis_url]
        cmd += list(args)
        self.out_path = data_dir.parent / "up.out"
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=full, stdout=open(self.out_path, "ab"),
                                     stderr=subprocess.STDOUT)
        self.session = requests.Session()

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                if self.session.get(f"{self.base}/readyz", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise AssertionError(f"cluster never became ready:\n{self.output()}")

    @property
    def state(self) -> dict:
        return json.loads((self.data_dir / "up.json").read_text())

    @property
    def redis(self) -> redis.Redis:
        """A client of the cluster's Redis (its master now, behind Sentinel with --redis-ha)."""
        from shared.store.connection import client
        from voxq.status import _target

        return client(_target(self.state), decode_responses=True)

    def child(self, name: str) -> psutil.Process | None:
        """The main process of one of voxq up's children, by the log it writes to."""
        for proc in psutil.Process(self.proc.pid).children():
            try:
                if any(f.path.endswith(f"/logs/{name}.log") for f in proc.open_files()):
                    return proc
            except psutil.Error:
                continue
        return None

    def submit(self, text: str, **extra) -> str:
        response = self.session.post(f"{self.base}/v1/jobs", json={"text": text, **extra}, timeout=10)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def job(self, job_id: str) -> dict:
        return self.session.get(f"{self.base}/v1/jobs/{job_id}", timeout=10).json()

    def diagnose(self, job_ids: list[str]) -> str:
        """Why these jobs have not ended: each one's bookkeeping in Redis (never its text), what
        its tenant has in flight, the broker's queues and taken messages, and the workers' log
        lines about it; for a timeout in CI, where nobody can look afterwards."""
        from shared.store import Store
        from shared.tasks import SYNTHESIS_QUEUES

        client = self.redis
        store = Store(client, result_ttl_s=600)
        lines = [f"queues {store.queues.depths(SYNTHESIS_QUEUES)}, taken and unacknowledged "
                 f"{len(store.queues.in_flight())}"]
        flights = {key: client.zrange(key, 0, -1, withscores=True)
                   for key in client.scan_iter(keyspace.TENANT_PATTERN) if client.type(key) == "zset"}
        log = self.data_dir / "logs" / "worker.log"
        worker_log = log.read_text(errors="replace").splitlines() if log.exists() else []
        for job_id in job_ids:
            fields = {k: v for k, v in client.hgetall(keyspace.job(job_id)).items() if k not in ("record", "result", "cache_key")}
            flying = [(m, round(time.time() - score, 1)) for members in flights.values()
                      for m, score in members if m.startswith(job_id)]
            said = [line[-200:] for line in worker_log if job_id in line][-15:]
            lines += [f"job {job_id}: {fields}", f"  in flight (member, seconds ago): {flying}",
                      *(f"  log: {line}" for line in said)]
        return "\n".join(lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass
class Ledger:
    """Every accepted job: its terminal state and how many times each chunk ran to success."""

    name: str
    jobs: dict[str, dict] = field(default_factory=dict)

    def accept(self, job_id: str, **facts) -> None:
        self.jobs[job_id] = dict(facts)

    def settle(self, cluster: UpCluster, timeout: float) -> float:
        """Wait until every job is terminal; returns how long that took."""
        started = time.monotonic()
        pending = set(self.jobs)
        while pending:
            if time.monotonic() - started >= timeout:
                stuck = list(pending)[:5]
                # A cluster that can say why (UpCluster) does; the others give each job's status.
                diagnose = getattr(cluster, "diagnose", None)
                raise AssertionError(diagnose(stuck) if diagnose else {j: cluster.job(j)["status"] for j in stuck})
            for job_id in list(pending):
                try:
                    body = cluster.job(job_id)
                except requests.RequestException:
                    continue
                if body["status"] in TERMINAL:
                    pending.discard(job_id)
            time.sleep(0.3)
        client = cluster.redis
        for job_id in self.jobs:
            self._note(job_id, client.hgetall(keyspace.job(job_id)))
        return time.monotonic() - started

    def watch(self, client: redis.Redis, timeout: float) -> float:
        """Like `settle`, reading the records in Redis, and noting each job's facts as it ends:
        for runs so long that the first records expire before the last job ends."""
        started = time.monotonic()
        pending = [j for j, facts in self.jobs.items() if "status" not in facts]
        while pending:
            assert time.monotonic() - started < timeout, f"{len(pending)} jobs not ended"
            pipe = client.pipeline(transaction=False)
            for job_id in pending:
                pipe.hgetall(keyspace.job(job_id))
            for job_id, fields in zip(list(pending), pipe.execute()):
                if fields.get("status") in TERMINAL:
                    self._note(job_id, fields)
                    pending.remove(job_id)
            time.sleep(0.3)
        return time.monotonic() - started

    def _note(self, job_id: str, fields: dict) -> None:
        facts = self.jobs[job_id]
        facts["status"] = fields.get("status", "missing")
        facts["error"] = json.loads(fields["error"]).get("code") if fields.get("error") else None
        facts["renders"] = {int(k.split(":")[1]): int(v) for k, v in fields.items() if k.startswith("chunk_renders:")}
        facts["chunks"] = int(fields.get("chunks_total") or 0)

    @property
    def succeeded(self) -> int:
        return sum(f["status"] == "succeeded" for f in self.jobs.values())

    @property
    def not_succeeded(self) -> int:
        return sum(f["status"] != "succeeded" for f in self.jobs.values())

    @property
    def failed(self) -> dict[str, int]:
        """Failed jobs by their error code."""
        codes: dict[str, int] = {}
        for facts in self.jobs.values():
            if facts["status"] == "failed":
                codes[facts["error"]] = codes.get(facts["error"], 0) + 1
        return codes

    @property
    def stuck(self) -> int:
        """Jobs not ended (queued or running) when the ledger was read."""
        return sum(f["status"] in ("queued", "running") for f in self.jobs.values())

    @property
    def lost(self) -> int:
        """Accepted jobs whose record is gone before they ended."""
        return sum(f["status"] == "missing" for f in self.jobs.values())

    @property
    def run_twice(self) -> int:
        return sum(n > 1 for f in self.jobs.values() for n in f["renders"].values())

    @property
    def chunks(self) -> int:
        return sum(f["chunks"] for f in self.jobs.values())

    def summary(self, **extra) -> str:
        facts = {"accepted": len(self.jobs), "succeeded": self.succeeded, "failed": self.failed or 0,
                 "stuck": self.stuck, "run twice": self.run_twice, "lost": self.lost, "chunks": self.chunks,
                 "chunk runs": sum(sum(f["renders"].values()) for f in self.jobs.values()), **extra}
        line = f"LEDGER {self.name}: " + ", ".join(f"{k} {v}" for k, v in facts.items())
        print(line)
        (ROOT / "test-artifacts").mkdir(exist_ok=True)  # a fresh clone has none
        with open(ROOT / "test-artifacts" / "chaos-ledger.txt", "a") as out:
            out.write(line + "\n")
        return line
