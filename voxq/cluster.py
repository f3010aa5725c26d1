"""A private cluster on this machine, started one way for `voxq up`, the benchmarks and the tests:
Redis, the API under the production gunicorn config, the CPU workers and, where asked, the
webhooks worker and Flower.

The children never outlive the process that starts them: each gets a parent-death signal (see
voxq/supervisor.py), so a SIGKILL of it or a closed terminal takes them along.
"""
from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.config import RedisTarget, environment
from voxq import broker
from voxq.errors import CliError
from voxq.network import free_port
from voxq.supervisor import GRACE_S, Supervisor

WORKER_NICE = 10
# Stopped after everything else, so no one loses its broker mid-job: the private Redis, or the
# private master, replicas and sentinels of --redis-ha.
REDIS_CHILDREN = ("redis", "redis-0", "redis-1", "redis-2", "sentinel-0", "sentinel-1", "sentinel-2")


@dataclass(frozen=True)
class ClusterConfig:
    """What to start: every field has the value `voxq up` starts with unless it says otherwise."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 1
    # None: a private redis-server in the data directory (with redis_ha: a private master,
    # two replicas and three sentinels). A plain URL or a Sentinel target someone else runs.
    redis: RedisTarget | None = None
    redis_ha: bool = False
    # The private sentinels' timings (VOXQ_REDIS_HA_DOWN_AFTER_MS, ..._FAILOVER_TIMEOUT_MS).
    ha_down_after_ms: int = 5000
    ha_failover_timeout_ms: int = 15000
    # None: no Flower. Its login goes to Flower through the environment, never its command line.
    flower_port: int | None = None
    flower_auth: str | None = None
    webhooks: bool = True
    log_level: str = "INFO"
    grace_s: float = GRACE_S
    # On top of the environment the children inherit (a test's or a benchmark's settings).
    worker_env: Mapping[str, str] = field(default_factory=dict)
    api_env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.flower_port is not None and not self.flower_auth:
            raise ValueError("Flower never runs open: give flower_auth with flower_port")
        if self.redis_ha and self.redis is not None:
            raise ValueError("redis_ha starts a private Redis: give no redis with it")

    @classmethod
    def private(cls, data_dir: Path, **fields) -> "ClusterConfig":
        """A cluster for a benchmark or a test: free ports, no webhooks worker, no Flower."""
        return cls(data_dir=data_dir, port=free_port(), webhooks=False, **fields)


class Cluster:
    """The running children of one ClusterConfig, under one Supervisor."""

    def __init__(self, config: ClusterConfig):
        self.config = config
        self.data_dir = Path(config.data_dir).resolve()
        self.supervisor = Supervisor(self.data_dir / "logs", config.grace_s, stop_last=REDIS_CHILDREN,
                                     excuse=self.redis_trouble)
        self.redis: RedisTarget | None = None
        self.private_redis = config.redis is None
        shown = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
        self.url = f"http://{shown}:{config.port}"

    def start(self) -> None:
        """Redis first (a private one answers before anything that needs it starts), then the rest."""
        config = self.config
        if config.redis_ha:
            # A dead node comes back only once the sentinels had time to promote the other
            # (down-after, then an election of a second or two), so it returns as a replica.
            self.redis = broker.start_private_ha(self.supervisor, self.data_dir / "redis-ha",
                                                 config.ha_down_after_ms, config.ha_failover_timeout_ms,
                                                 restart_after_s=2 * config.ha_down_after_ms / 1000 + 3)
        elif self.private_redis:
            self.redis = broker.start_private(self.supervisor, self.data_dir / "redis")
        else:
            self.redis = broker.given(config.redis)
        env = environment(**self.redis.environment(), VOXQ_DATA_DIR=str(self.data_dir), PYTHONUNBUFFERED="1")
        python = sys.executable
        self.supervisor.spawn("api", [python, "-m", "gunicorn", "-c", "python:api.gunicorn_conf",
                                      "--bind", f"{config.host}:{config.port}",
                                      "--workers", "2", "--threads", "4", "--timeout", "120",
                                      "api.app:create_app()"],
                              dict(env, PROMETHEUS_MULTIPROC_DIR=str(self.data_dir / "metrics" / "api"),
                                   **config.api_env))
        self.supervisor.spawn("worker", [python, "-m", "celery", "-A", "worker.app", "worker", "--pool", "prefork",
                                         "--concurrency", str(config.workers), "-Q", "interactive,batch",
                                         "-n", f"cpu-{config.port}@%h", "--loglevel", config.log_level],
                              dict(env, **config.worker_env),
                              # Synthesis is throughput work sharing cores with the API: a lower
                              # priority keeps submits and polls fast while every core synthesizes.
                              # SIGTERM when orphaned, like every child: a cold shutdown (SIGQUIT)
                              # hangs when Redis dies at the same moment. What it leaves taken is
                              # requeued by the next start (see broker.requeue_orphans).
                              # Stopped at once by SIGKILL, for the same reason: Celery's cold
                              # shutdown takes seconds (2 to 4 measured) to hand back what the next
                              # start requeues anyway.
                              nice=WORKER_NICE, stop_at_once=signal.SIGKILL)
        if config.webhooks:
            self.supervisor.spawn("webhooks", [python, "-m", "celery", "-A", "worker.app", "worker", "--pool",
                                               "threads", "--concurrency", "8", "-Q", "webhooks",
                                               "-n", f"webhooks-{config.port}@%h", "--loglevel", config.log_level],
                                  dict(env, **config.worker_env), stop_at_once=signal.SIGKILL)
        if config.flower_port is not None:
            # Flower reads its options and its app's Celery settings from the environment: the
            # password and the Redis URL stay out of the command line, which every local user can
            # read. Its app (shared/flower_app.py) gives Celery the settings' broker options
            # (Sentinel's master name among them).
            # Flower keeps the events of its last --max_tasks tasks in memory: 2,000 (not its
            # 10,000), so its memory stays small and flat under a steady load.
            self.supervisor.spawn("flower", [python, "-m", "celery", "-A", "shared.flower_app", "flower",
                                             f"--address={config.host}", f"--port={config.flower_port}",
                                             "--max_tasks=2000"],
                                  dict(env, FLOWER_BASIC_AUTH=config.flower_auth), stop_at_once=signal.SIGKILL)

    def wait_ready(self, timeout: float = 120) -> None:
        """Until the API's /readyz says a worker serves; CliError when a child exits or time runs out."""
        wait_ready(self.url, timeout, self.supervisor.exited, f"logs in {self.supervisor.logs}")

    @property
    def redis_url(self) -> str | None:
        return self.redis.url if self.redis else None

    def redis_trouble(self) -> str | None:
        """Why Redis takes no writes now (down, disk full, maxmemory, no master), or None: a
        child that keeps dying then is waiting for Redis, not broken."""
        if not self.redis:
            return None
        from shared.store import write_problem

        return write_problem(self.redis)

    @property
    def resumes(self) -> str:
        """When a job cut short by a stop goes on: the private Redis keeps it for our next start."""
        return "on the next start" if self.private_redis else "when a worker serves this Redis again"

    def jobs_in_flight(self) -> list[str] | None:
        """The jobs being spoken now, for a message; None when Redis cannot say."""
        if not self.redis:
            return None
        from voxq import status

        try:
            return [taken.first_arg for taken in status.synthesis_in_flight(status.open_store(self.redis))]
        except Exception:  # noqa: BLE001 - only for the message: Redis may already be gone
            return None

    def unfinished(self, job_ids: list[str]) -> int | None:
        """How many of these jobs are not done yet; None when Redis cannot say."""
        from shared.jobs import TERMINAL
        from voxq import status

        try:
            store = status.open_store(self.redis)
            return sum(1 for job_id in job_ids if (record := store.jobs.get(job_id)) and record.status not in TERMINAL)
        except Exception:  # noqa: BLE001 - only for the message
            return None

    def watch(self) -> int:
        return self.supervisor.watch()

    def stop(self) -> int | None:
        """The API, workers and Flower first, together; Redis last, so no one loses its broker mid-job.

        Returns how many of the jobs in flight when the stop began are left unfinished (they
        resume `self.resumes`), None when Redis could not say.
        """
        flying: list[str] | None = None
        unfinished: int | None = 0

        def stopping() -> str:
            nonlocal flying
            flying = self.jobs_in_flight()
            if not flying:
                return "voxq: stopping"
            # A task is a chunk: the warm shutdown finishes the chunks being spoken, and the
            # rest of each job waits in the queue.
            jobs = "the job in flight resumes" if len(flying) == 1 else f"the {len(flying)} jobs in flight resume"
            return (f"voxq: stopping: the workers finish the chunk they are speaking; the rest of {jobs} "
                    f"{self.resumes} (Ctrl-C again stops at once)")

        def before_last() -> None:
            nonlocal unfinished
            if flying:
                unfinished = self.unfinished(flying)

        self.supervisor.stop(stopping, "voxq: stopping at once; the chunks being spoken are cut off and "
                                       f"spoken again {self.resumes}", before_last)
        return unfinished

    def __enter__(self) -> "Cluster":
        try:
            self.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_) -> None:
        self.stop()


def wait_ready(url: str, timeout: float = 120, exited: Callable[[], list[str]] = list, logs: str = "") -> None:
    """Until the API at `url` says on /readyz that a worker serves; CliError when a child of ours
    has exited (`exited` names them) or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if is_ready(url):
            return
        dead = exited()
        if dead or time.monotonic() > deadline:
            why = "; ".join(filter(None, (f"{', '.join(dead)} exited" if dead else "", logs)))
            raise CliError("the cluster did not become ready" + (f" ({why})" if why else ""))
        time.sleep(0.2)


def is_ready(url: str, session=None) -> bool:
    """Whether the API at `url` answers /readyz with 200: Redis answers and a worker serves."""
    import requests

    try:
        return (session or requests).get(f"{url.rstrip('/')}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False
