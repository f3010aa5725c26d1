"""Redis behind Sentinel, on real processes: `voxq up --redis-ha` (a master, two replicas, three
sentinels) with its master SIGKILLed or SIGSTOPped under a steady load of submissions, each run
against a ledger of every accepted job (tests/chaos.py); and the settings that reach it.

Sentinel's timings are short here (down-after 1 s), so a failover takes seconds, not the
production defaults' tens of seconds."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest
import redis
import requests

from shared.config import RedisTarget, Settings, SettingsError
from shared.store import Store, Unavailable
from tests.chaos import Ledger, UpCluster, text_of
from tests.receiver import Receiver, RefuseFirstAttempts
from tests.support import ROOT, wait_until

DOWN_AFTER_MS = 1000
# A job or chunk whose message went with a lost master is sent again after VOXQ_CHUNK_TIMEOUT_S
# (README, "High availability"): 12 s here, not 300 s, to fit the test; long enough that a chunk
# only waiting its turn on the two workers is rarely sent twice (and harmless when it is).
# The webhooks' second attempt comes 8 s after the first: the failover happens in that wait.
HA_ENV = {"VOXQ_REDIS_HA_DOWN_AFTER_MS": str(DOWN_AFTER_MS), "VOXQ_REDIS_HA_FAILOVER_TIMEOUT_MS": "3000",
          "VOXQ_CHUNK_TIMEOUT_S": "12", "VOXQ_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32",
          "VOXQ_WEBHOOK_PORTS": "1024-65535", "VOXQ_WEBHOOK_RETRY_SCHEDULE": "0,8,8"}
# What the API may take to answer 202s again after the master dies: Sentinel's down-after, its
# vote and promotion, and the clients' reconnect (measured: 2 to 4 s).
FAILOVER_BOUND_S = DOWN_AFTER_MS / 1000 + 9
# How long every job accepted under a load must take to end, failover and lost first messages
# (sent again after VOXQ_CHUNK_TIMEOUT_S) included.
SETTLE_S = 120


def test_a_sentinel_url_needs_the_master_name_in_one_clear_line(tmp_path):
    url = "sentinel://:pw@127.0.0.1:26379/0;sentinel://127.0.0.1:26380/0"
    with pytest.raises(SettingsError, match="^VOXQ_REDIS_SENTINEL_MASTER: must name the master"):
        Settings.load(redis_url=url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOXQ_", "REDIS_URL"))}
    done = subprocess.run([sys.executable, "-m", "voxq", "up", "--data-dir", str(tmp_path), "--redis-url", url],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert "VOXQ_REDIS_SENTINEL_MASTER: must name the master" in done.stderr
    assert "pw" not in done.stderr.replace("password", "")  # the URL's password is not shown


def test_the_settings_make_celery_and_the_store_sentinel_aware():
    from shared.broker import celery_config

    plain = Settings.load(redis_url="redis://127.0.0.1:6379/0")
    assert plain.redis.replicas_to_wait == 0 and plain.redis.transport_options() == {}
    assert "master_name" not in celery_config(plain)["broker_transport_options"]
    ha = Settings.load(redis_url="sentinel://:p%40ss@10.0.0.1:26379/2;sentinel://10.0.0.2:26379/2",
                       redis_sentinel_master="mymaster", redis_sentinel_password="s3")
    target = ha.redis
    assert target.sentinels == [("10.0.0.1", 26379), ("10.0.0.2", 26379)]
    assert (target.password, target.db, target.replicas_to_wait) == ("p@ss", 2, 1)
    options = celery_config(ha, worker=True)["broker_transport_options"]
    assert options["master_name"] == "mymaster" and options["sentinel_kwargs"]["password"] == "s3"
    assert "s3" not in repr(ha) and "s3" not in repr(target)
    assert Settings.load(redis_url=ha.redis_url, redis_sentinel_master="m", redis_wait_replicas=0).redis \
        .replicas_to_wait == 0


# --- voxq up --redis-ha, its master killed or paused under load -------------------------------

class HaSet:
    """What the sentinels of a `voxq up --redis-ha` say, and its Redis nodes by port."""

    def __init__(self, up: UpCluster):
        state = up.state
        self.target = RedisTarget(state["redis_url"], state["redis_sentinel_master"], state["redis_sentinel_password"])
        self.password = self.target.sentinel_password
        self.sentinels = [redis.Redis(host=h, port=p, password=self.password, socket_timeout=1, decode_responses=True)
                          for h, p in self.target.sentinels]

    def master_port(self) -> int | None:
        for sentinel in self.sentinels:
            try:
                return int(sentinel.sentinel_get_master_addr_by_name(self.target.sentinel_master)[1])
            except (redis.RedisError, TypeError):
                continue
        return None

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.password, socket_timeout=1, decode_responses=True)

    def process(self, port: int) -> psutil.Process:
        return psutil.Process(int(self.node(port).info("server")["process_id"]))

    def role(self, port: int) -> str | None:
        try:
            return self.node(port).info("replication")["role"]
        except redis.RedisError:
            return None

    def replicas_of(self, port: int) -> int:
        try:
            return int(self.node(port).info("replication")["connected_slaves"])
        except redis.RedisError:
            return 0


class Load:
    """Submissions one after another from a thread, each answer noted: (time, status, job ID)."""

    def __init__(self, up: UpCluster, every_s: float = 0.1, text=text_of, **extra):
        self.up, self.every_s, self.text, self.extra = up, every_s, text, extra
        self.answers: list[tuple[float, int | str, str | None]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        session = requests.Session()
        session.headers.update(self.up.session.headers)
        n = 0
        while not self.stopping.is_set():
            n += 1
            try:
                answer = session.post(f"{self.up.base}/v1/jobs", json={"text": self.text(n), **self.extra}, timeout=30)
                job = answer.json().get("id") if answer.status_code == 202 else None
                self.answers.append((time.monotonic(), answer.status_code, job))
            except requests.RequestException as exc:
                self.answers.append((time.monotonic(), type(exc).__name__, None))
            self.stopping.wait(self.every_s)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(40)

    def accepted(self) -> list[str]:
        return [job for _, status, job in self.answers if status == 202]

    def codes(self) -> dict:
        counts: dict = {}
        for _, status, _ in self.answers:
            counts[status] = counts.get(status, 0) + 1
        return counts

    def outage_s(self, since: float) -> float:
        """From the last 202 before `since` to the first 202 after the first refusal after it."""
        before = [t for t, status, _ in self.answers if t < since and status == 202]
        refused = [t for t, status, _ in self.answers if t >= since and status != 202]
        if not refused:
            return 0.0
        after = [t for t, status, _ in self.answers if t > refused[0] and status == 202]
        return (after[0] if after else float("inf")) - (before[-1] if before else since)


class HaCluster:
    """One `voxq up --redis-ha` (two workers, the webhooks worker) for the module: its tests run
    one after another on it, each from a healed set (both replicas in sync), so the cluster's
    start (engines loaded, the Redis set, the sentinels) is paid once. A keys file gives a tenant
    a webhook secret; the load submits as that tenant too."""

    def __init__(self, folder):
        from shared import keys

        self.key, self.secret = keys.new_key(), keys.new_secret()
        keys_file = folder / "keys.toml"
        keys_file.write_text(f'[[keys]]\ntenant = "hooked"\nsha256 = "{keys.hash_key(self.key)}"\n'
                             f'webhook_secrets = ["{self.secret}"]\n')
        self.up = UpCluster(folder / "data", workers=2, args=("--redis-ha",), VOXQ_API_KEYS_FILE=str(keys_file),
                            **HA_ENV)
        self.up.session.headers["Authorization"] = f"Bearer {self.key}"
        self.nodes: HaSet | None = None

    def healed(self) -> UpCluster:
        """The cluster, once its master has both replicas in sync (after an earlier test's fault)."""
        self.up.wait_ready()
        self.nodes = self.nodes or HaSet(self.up)
        wait_until(lambda: _all_replicated(self.nodes), 60, 0.2, "both replicas in sync")
        assert self.up.proc.poll() is None and "crash loop" not in self.up.output()
        return self.up


@pytest.fixture(scope="module")
def ha(tmp_path_factory):
    cluster = HaCluster(tmp_path_factory.mktemp("ha"))
    yield cluster
    cluster.up.stop()


def _all_replicated(ha_set: HaSet) -> bool:
    port = ha_set.master_port()
    return port is not None and ha_set.replicas_of(port) == 2


def _short_texts(first: int):
    """One short sentence, and a second one for every third job (a job of one chunk, or two,
    with CHAOS_ENV's 1 s first chunk), so a load of a few dozen jobs ends in seconds on two
    workers; numbered from `first`, so no test's jobs are answered from the result cache an
    earlier test filled."""
    return lambda n: f"第{first + n}位客户您好。" + ("" if n % 3 else text_of(n * 4))


def _settle(up: UpCluster, load: Load, name: str, since: float) -> Ledger:
    ledger = Ledger(name)
    for job in load.accepted():
        ledger.accept(job)
    took = ledger.settle(up, timeout=SETTLE_S)
    worker_log = up.data_dir / "logs" / "worker.log"
    # Jobs whose first message was lost, found still queued and sent again (the whole run so far).
    resent = worker_log.read_text(errors="replace").count("its first task is sent again") if worker_log.exists() else 0
    ledger.summary(answers=load.codes(), api_failover_s=round(load.outage_s(since), 2), settled_s=round(took, 1),
                   first_tasks_resent_so_far=resent)
    assert ledger.chunks >= len(ledger.jobs)  # spoken, not answered from the cache
    assert set(load.codes()) <= {202, 503}, load.codes()  # never a 500, never a dropped connection
    assert ledger.lost == 0 and ledger.not_succeeded == 0, {j: f for j, f in ledger.jobs.items()
                                                            if f["status"] != "succeeded"}
    assert ledger.run_twice == 0, {j: f["renders"] for j, f in ledger.jobs.items()}
    return ledger


def _steady_load(ha, first: int):
    """The healed set under a steady load of submissions (texts numbered from `first`, so no test
    is answered from the cache another filled): (cluster, nodes, the master's port, the load)."""
    up = ha.healed()
    nodes = ha.nodes
    old = nodes.master_port()
    load = Load(up, every_s=0.2, text=_short_texts(first))
    wait_until(lambda: len(load.accepted()) >= 5, 30, 0.1, "a steady load")
    return up, nodes, old, load


@pytest.mark.slow
def test_sigkill_of_the_master_under_load_loses_no_accepted_job(ha):
    up, nodes, old, load = _steady_load(ha, first=1)
    killed_at = time.monotonic()
    nodes.process(old).send_signal(signal.SIGKILL)
    wait_until(lambda: (p := nodes.master_port()) not in (None, old) and p, 20, 0.1, "a new master")
    wait_until(lambda: any(t > killed_at + 1 and s == 202 for t, s, _ in load.answers), FAILOVER_BOUND_S + 5, 0.1,
               "submissions accepted again")
    # The old master comes back (voxq up starts it again) as a replica of the new one.
    wait_until(lambda: nodes.role(old) == "slave" and nodes.replicas_of(nodes.master_port()) == 2, 45, 0.2,
               "the old master back as a replica")
    healed = len(load.accepted())
    wait_until(lambda: len(load.accepted()) >= healed + 3, 20, 0.1, "a little load on the healed set too")
    load.stop()
    outage = load.outage_s(killed_at)
    _settle(up, load, "sentinel-sigkill", killed_at)
    assert outage <= FAILOVER_BOUND_S, outage
    assert "crash loop" not in up.output() and up.proc.poll() is None


@pytest.mark.slow
def test_a_paused_master_split_brain_loses_no_accepted_job(ha):
    # In the instant after SIGCONT the old master still takes writes: the API can publish a job's
    # first message there while the job's record, on the new master, is acknowledged. That job is
    # still queued VOXQ_CHUNK_TIMEOUT_S later, and the redispatch sends its first task again.
    up, nodes, old, load = _steady_load(ha, first=10_001)
    paused = nodes.process(old)
    paused.suspend()  # SIGSTOP: to the sentinels, and the clients, a master cut off the network
    paused_at = time.monotonic()
    try:
        wait_until(lambda: (p := nodes.master_port()) not in (None, old) and p, 20, 0.1, "a new master")
        # Past the promotion, so clients have moved on while the old master still believes it leads.
        time.sleep(2 * DOWN_AFTER_MS / 1000)
    finally:
        paused.resume()  # SIGCONT: it still thinks it is the master, until the sentinels say not
    wait_until(lambda: nodes.role(old) == "slave", 45, 0.1, "the old master turned replica")
    turned = len(load.accepted())
    wait_until(lambda: len(load.accepted()) >= turned + 3, 20, 0.1, "load after the old master turned replica")
    load.stop()
    _settle(up, load, "sentinel-sigstop", paused_at)


@pytest.mark.slow
def test_a_failover_while_a_webhook_waits_for_its_retry_delivers_it_once(ha):
    answer = RefuseFirstAttempts()  # every delivery waits for its retry
    refused = answer.refused
    receiver = Receiver(answer=answer)
    try:
        up = ha.healed()
        nodes = ha.nodes
        jobs = [up.submit(f"第{n + 1}位客户，您的订单已发货。", callback_url=receiver.url) for n in range(4)]
        wait_until(lambda: len(refused) == len(jobs), 60, 0.05, "every first attempt refused")
        old = nodes.master_port()
        nodes.process(old).send_signal(signal.SIGKILL)

        ended: dict[str, str] = {}

        def settled():
            try:
                ended.update({j: up.job(j)["webhook"]["status"] for j in jobs})
            except (requests.RequestException, KeyError, ValueError):
                return False
            return all(status in ("delivered", "failed", "disabled") for status in ended.values())

        wait_until(settled, 60, 0.2, "every webhook delivered")
        # A second delivery, had there been one, would come now. (The statuses are read before
        # this pause: the API's keep-alive of 2 s may close the idle connection just as a request
        # after it goes out, a reset that has nothing to do with the failover.)
        time.sleep(2)
        by_id: dict[str, int] = {}
        for request in receiver.requests:
            by_id[request.headers["webhook-id"]] = by_id.get(request.headers["webhook-id"], 0) + 1
        print(f"LEDGER sentinel-webhooks: webhooks {len(by_id)}, requests {len(receiver.requests)}")
        assert set(ended.values()) == {"delivered"}, ended
        assert len(by_id) == len(jobs) and set(by_id.values()) == {2}, by_id  # refused once, delivered once
    finally:
        receiver.stop()


def test_the_store_follows_a_failover_and_keeps_what_it_waited_for(tmp_path):
    """The store alone, on the processes `voxq up --redis-ha` starts: a write confirmed by
    `replicated()` survives the master's SIGKILL, and the same Store object serves the new master."""
    from voxq import broker
    from voxq.supervisor import Supervisor

    supervisor = Supervisor(tmp_path / "logs")
    try:
        target = broker.start_private_ha(supervisor, tmp_path / "ha", DOWN_AFTER_MS, 3000, restart_after_s=60)
        store = Store.open(target, result_ttl_s=60)
        assert store.wait_replicas == 1

        def in_sync() -> bool:
            try:
                return store.replicated()
            except Unavailable:  # the master refuses writes (NOREPLICAS) until a replica is in sync
                return False

        wait_until(in_sync, 20, 0.1, "a replica in sync")
        from shared.jobs import JobRequest

        record = store.jobs.create(JobRequest(text="你好。"), "tenant")
        assert store.replicated()
        host, port = store.master_address()
        master = redis.Redis(host=host, port=port, password=target.password)
        os.kill(int(master.info("server")["process_id"]), signal.SIGKILL)
        failed = 0
        deadline = time.monotonic() + FAILOVER_BOUND_S + 5

        def serves():
            nonlocal failed
            try:
                return store.jobs.get(record.id)
            except Unavailable:
                failed += 1
                return None

        found = wait_until(serves, deadline - time.monotonic(), 0.1, "the store on the new master")
        assert found.id == record.id and store.master_address()[1] != port
        # The other replica follows the new master: once it has resynced from it (a moment after
        # the promotion), writes are confirmed again.
        wait_until(in_sync, 20, 0.1, "the other replica in sync with the new master")
    finally:
        supervisor.stop()
