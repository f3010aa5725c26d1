"""`voxq bench ha`: Redis failover under load, on the private Sentinel set of `voxq up --redis-ha`.

Prints, in one run: the failover time the API shows (its last 202 before a SIGKILL of the master
to its first 202 after), for each of --failovers failovers under a steady load of submissions;
the jobs accepted, succeeded, lost and run twice across them; and the submit latency p50/p99
with the wait for a replica on and off (two clusters, one after the other).
"""
from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import requests

from voxq.bench.figures import percentile
from voxq.cluster import Cluster, ClusterConfig
from voxq.errors import CliError

TEXTS = ["今天天气很好。", "我们一起去公园散步吧！", "请在三月十五日之前提交报告。"]


def _cluster(workers: int, down_after_ms: int, wait_replicas: int) -> Cluster:
    config = ClusterConfig.private(Path(tempfile.mkdtemp(prefix="voxq-bench-ha-")), workers=workers,
                                   log_level="WARNING", redis_ha=True, ha_down_after_ms=down_after_ms,
                                   ha_failover_timeout_ms=max(3000, 3 * down_after_ms),
                                   api_env={"VOXQ_REDIS_WAIT_REPLICAS": str(wait_replicas),
                                            "VOXQ_RATE_LIMIT_PER_MINUTE": "0"},
                                   worker_env={"VOXQ_CHUNK_TIMEOUT_S": "30"})
    cluster = Cluster(config)
    cluster.start()
    cluster.wait_ready()
    return cluster


def _revive(cluster: Cluster, pid: int) -> None:
    """Start a killed Redis node again, as `voxq up`'s supervisor does (after its restart delay,
    so it comes back as a replica). Not Supervisor.watch in a thread: it would race the stop."""
    supervisor = cluster.supervisor
    name, proc = next((n, p) for n, p in supervisor.children if p.pid == pid)
    proc.wait(10)
    spec = supervisor.specs[name]
    time.sleep(spec.restart_after_s)
    supervisor.spawn(name, spec.cmd, spec.env, restart_after_s=spec.restart_after_s)


def _master_pid(store) -> tuple[int, int]:
    """(port, pid) of the master the sentinels name now."""
    _, port = store.master_address()
    return port, int(store.server_info("server")["process_id"])


def _submit_latencies(url: str, n: int) -> list[float]:
    session = requests.Session()
    took = []
    for i in range(n):
        started = time.perf_counter()
        answer = session.post(f"{url}/v1/jobs", json={"text": TEXTS[i % len(TEXTS)]}, timeout=30)
        if answer.status_code == 202:
            took.append((time.perf_counter() - started) * 1000)
    return took


def cmd_ha(args) -> int:
    from shared.jobs import TERMINAL
    from voxq import status

    cluster = _cluster(args.workers, args.down_after_ms, 1)
    answers: list[tuple[float, int, str | None]] = []
    stopping = threading.Event()

    def load():
        session = requests.Session()
        n = 0
        while not stopping.is_set():
            n += 1
            try:
                answer = session.post(f"{cluster.url}/v1/jobs", json={"text": TEXTS[n % len(TEXTS)]}, timeout=30)
                answers.append((time.monotonic(), answer.status_code,
                                answer.json().get("id") if answer.status_code == 202 else None))
            except requests.RequestException:
                answers.append((time.monotonic(), 0, None))
            stopping.wait(args.every_s)

    outages = []
    try:
        store = status.open_store(cluster.redis)
        thread = threading.Thread(target=load, daemon=True)
        thread.start()
        for k in range(args.failovers):
            # Both replicas in sync before each kill: the set is whole again.
            deadline = time.monotonic() + 90
            while int(store.server_info("replication").get("connected_slaves", 0)) < 2:
                if time.monotonic() > deadline:
                    raise CliError("the Sentinel set did not heal after a failover")
                time.sleep(0.2)
            time.sleep(2)
            port, pid = _master_pid(store)
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            while time.monotonic() - killed < 60:
                late = [t for t, code, _ in answers if t > killed and code == 202]
                if late and any(t > killed and code != 202 for t, code, _ in answers) or \
                        (late and late[0] > killed + 0.5):
                    break
                time.sleep(0.1)
            before = [t for t, code, _ in answers if t < killed and code == 202]
            after = [t for t, code, _ in answers if t > killed and code == 202]
            outages.append((after[0] if after else float("inf")) - (before[-1] if before else killed))
            print(f"failover {k + 1}: master on port {port} killed; the API answered 202 again after "
                  f"{outages[-1]:.2f} s", flush=True)
            _revive(cluster, pid)
        stopping.set()
        thread.join(40)
        accepted = [job for _, code, job in answers if code == 202]
        codes: dict = {}
        for _, code, _ in answers:
            codes[code] = codes.get(code, 0) + 1
        deadline = time.monotonic() + args.settle_s
        records = {}
        while time.monotonic() < deadline:
            records = {job: store.jobs.get(job) for job in accepted}
            if all(r is not None and r.status in TERMINAL for r in records.values()):
                break
            time.sleep(1)
        lost = sum(r is None for r in records.values())
        succeeded = sum(r is not None and r.status == "succeeded" for r in records.values())
        twice = sum(n > 1 for job in accepted if records.get(job) for n in store.chunks.renders(job).values())
    finally:
        stopping.set()
        cluster.stop()
    print(f"failover time seen by the API: p50 {percentile(outages, 50):.2f} s, max {max(outages):.2f} s "
          f"({args.failovers} SIGKILLs of the master, down-after {args.down_after_ms} ms)")
    print(f"jobs: accepted {len(accepted)}, succeeded {succeeded}, lost {lost}, chunks run twice {twice}; "
          f"answers {codes}")
    latencies = {}
    for wait in (1, 0):
        cluster = _cluster(1, args.down_after_ms, wait)
        try:
            _submit_latencies(cluster.url, 10)  # warm
            latencies[wait] = _submit_latencies(cluster.url, args.submits)
        finally:
            cluster.stop()
    on, off = latencies[1], latencies[0]
    print(f"submit latency, wait for 1 replica on:  p50 {percentile(on, 50):.1f} ms, p99 {percentile(on, 99):.1f} ms")
    print(f"submit latency, wait for replicas off: p50 {percentile(off, 50):.1f} ms, p99 {percentile(off, 99):.1f} ms")
    return 0


def add_parser(which) -> None:
    ha = which.add_parser("ha", help="Redis failover under load (a private Sentinel set)")
    ha.add_argument("--failovers", type=int, default=5, help="SIGKILLs of the master (default 5)")
    ha.add_argument("--workers", type=int, default=2, help="worker processes")
    ha.add_argument("--every-s", type=float, default=0.1, help="pause between two submissions of the load")
    ha.add_argument("--down-after-ms", type=int, default=1000, help="Sentinel's down-after-milliseconds")
    ha.add_argument("--submits", type=int, default=300, help="submissions per latency figure")
    ha.add_argument("--settle-s", type=float, default=300, help="how long the accepted jobs may take to end")
    ha.set_defaults(func=cmd_ha, quiet_native=True)
