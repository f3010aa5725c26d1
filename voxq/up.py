"""`voxq up`: Redis, the API, the workers and Flower on one machine, stopped together by Ctrl-C.

A child that dies is started again, after a back-off, and the log says why; only a crash loop
(CRASH_LOOP_DEATHS deaths in a row of one child, each within MIN_UPTIME_S of its start) stops
the cluster, saying so.
The children never outlive `voxq up`: each gets a parent-death signal, so a SIGKILL of `voxq up`
or a closed terminal takes them along, and one data directory serves one `voxq up` at a time.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from voxq import status
from voxq.cli import CliError

WORKER_NICE = 10

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Ctrl-C gives every child this long to stop (VOXQ_STOP_GRACE_S): a worker finishes the chunk it
# is speaking (seconds: a task is a chunk, not a job) and hands back what it prefetched. After
# it, or at a second Ctrl-C, the workers' cold shutdown hands their chunks back to the queue.
GRACE_S = 30
# After the grace period: the cold shutdown has this long before the process group is killed.
QUICK_GRACE_S = 10
# Restarting a child that died: back-off doubling from RESTART_FIRST_S up to RESTART_MAX_S with
# each quick death in a row (one within MIN_UPTIME_S of its start). CRASH_LOOP_DEATHS quick
# deaths in a row is a crash loop (bad settings, a port taken), which stops the cluster; a child
# that ran longer than MIN_UPTIME_S before dying starts the count afresh.
RESTART_FIRST_S = 0.5
RESTART_MAX_S = 15
MIN_UPTIME_S = 10
CRASH_LOOP_DEATHS = 5


def _say(message: str, err: bool = False) -> None:
    # After the terminal is gone (SIGHUP) a print fails: stopping must go on regardless.
    try:
        print(message, file=sys.stderr if err else sys.stdout, flush=True)
    except (OSError, ValueError):
        pass


def _parent_death_signal(sig: int, parent: int):
    """A preexec_fn: the child gets `sig` when its parent dies, even by SIGKILL (Linux prctl)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

    def arm():
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        # The parent may have died between fork and prctl: then no signal would ever come.
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return arm


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port(url: str) -> int | None:
    from urllib.parse import urlsplit

    return urlsplit(url).port


def _redis_answers(url: str) -> bool:
    from shared.store import answers

    return answers(url)


class Cluster:
    def __init__(self, args):
        self.args = args
        self.children: list[tuple[str, subprocess.Popen]] = []
        # How each child was started, to start it again: name -> (cmd, env, nice, death signal).
        self.specs: dict[str, tuple] = {}
        self.started: dict[str, float] = {}
        self.quick_deaths: dict[str, int] = {}
        self.grace_s = GRACE_S
        self.data_dir = Path(args.data_dir).resolve()
        self.redis_url: str | None = None
        self.private_redis = False
        self._lock = None

    def lock(self) -> None:
        """Hold the data directory for as long as we run: two clusters must not share one by accident."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.data_dir / status.LOCK_FILE, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise CliError(f"another `voxq up` (pid {holder}) is using {self.data_dir}; stop it first, "
                           "or give this one its own --data-dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock = handle  # released by the kernel when we exit, however we exit

    def spawn(self, name: str, cmd: list[str], env: dict, nice: int = 0, death_signal: int = signal.SIGTERM) -> None:
        log = open(self.data_dir / "logs" / f"{name}.log", "ab")
        die_with_us = _parent_death_signal(death_signal, os.getpid())

        def prepare():
            die_with_us()
            if nice:
                os.nice(nice)

        # Each child in its own session, so a Ctrl-C reaches it only through us, in order; the
        # parent-death signal stops it when we die without getting to say so.
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=prepare)
        log.close()
        self.specs[name] = (cmd, env, nice, death_signal)
        self.started[name] = time.monotonic()
        self.children = [(n, p) for n, p in self.children if n != name] + [(name, proc)]

    def start_redis(self) -> str:
        given = self.args.redis_url or os.environ.get("REDIS_URL")
        if given:
            if not _redis_answers(given):
                raise CliError(f"Redis at {status.redacted(given)} does not answer")
            return given
        # Default: a private redis-server in the data directory, never whatever listens on 6379,
        # whose jobs would mix with ours. A password keeps other local users' clients out too.
        binary = shutil.which("redis-server")
        if binary is None:
            raise CliError("redis-server is not installed (apt-get install redis-server), "
                           "and neither --redis-url nor REDIS_URL is given")
        port = _free_port()
        password = secrets.token_urlsafe(24)
        folder = self.data_dir / "redis"
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "redis.conf"
        # The password goes in a file only we can read, never on a command line that `ps` shows.
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join((
                f"port {port}", "bind 127.0.0.1", f'dir "{folder}"', "appendonly yes", "appendfsync everysec",
                'save ""', "maxmemory-policy noeviction", f"requirepass {password}", "",
            )))
        os.chmod(config, 0o600)
        self.spawn("redis", [binary, str(config)], dict(os.environ))
        self.private_redis = True
        url = f"redis://:{password}@127.0.0.1:{port}/0"
        for _ in range(200):
            if _redis_answers(url):
                self._requeue_orphans(url)
                return url
            if self.children[-1][1].poll() is not None:
                break
            time.sleep(0.05)
        raise CliError(f"redis-server did not start; see {self.data_dir / 'logs' / 'redis.log'}")

    @staticmethod
    def _requeue_orphans(url: str) -> None:
        """Put the jobs a previous run left taken-but-unfinished back in their queues.

        Only for the private Redis: we hold the data directory's lock, so no worker of ours is
        alive, and every unacknowledged message belongs to a worker that was stopped at once or
        killed. Without this they would wait out the visibility timeout (an hour by default).
        """
        from kombu import Connection

        try:
            with Connection(url, transport_options={"visibility_timeout": 0}) as conn:
                qos = conn.default_channel.qos
                qos.restore_visible(num=100_000, interval=1)
        except Exception as exc:  # a convenience: a failure here must not stop the cluster
            _say(f"voxq: could not requeue unfinished jobs now ({exc}); they return after the "
                 "visibility timeout", err=True)

    def run(self) -> int:
        args = self.args
        from shared.config import SettingsError, Settings
        from shared.keys import KeysError, keys_configured

        try:
            settings = Settings.load()
            configured = keys_configured(settings.keys)
            self.grace_s = settings.jobs.stop_grace_s
        except SettingsError as exc:
            raise CliError(f"invalid settings: {exc}") from exc
        except KeysError as exc:
            raise CliError(f"API keys are misconfigured: {exc}") from exc
        if not _is_loopback(args.host) and not configured:
            raise CliError(
                f"refusing to bind {args.host} without API keys: anyone on the network could use the "
                "cluster. Create one with `voxq keys create` and set VOXQ_API_KEYS or VOXQ_API_KEYS_FILE, "
                "or bind 127.0.0.1"
            )
        self.lock()
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)

        def interrupt(*_):
            raise KeyboardInterrupt()

        # Explicit handlers: a shell that starts us in the background leaves SIGINT ignored. A
        # closed terminal (SIGHUP) stops the cluster like Ctrl-C does.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, interrupt)
        try:
            redis_url = self.redis_url = self.start_redis()
            env = dict(os.environ, REDIS_URL=redis_url, VOXQ_DATA_DIR=str(self.data_dir), PYTHONUNBUFFERED="1")
            python = sys.executable
            api_env = dict(env, PROMETHEUS_MULTIPROC_DIR=str(self.data_dir / "metrics" / "api"))
            self.spawn("api", [python, "-m", "gunicorn", "-c", "python:api.gunicorn_conf",
                               "--bind", f"{args.host}:{args.port}",
                               "--workers", "2", "--threads", "4", "--timeout", "120",
                               "api.app:create_app()"], api_env)
            self.spawn("worker", [python, "-m", "celery", "-A", "worker.app", "worker", "--pool", "prefork",
                                  "--concurrency", str(args.workers), "-Q", "interactive,batch",
                                  "-n", f"cpu-{args.port}@%h", "--loglevel", "INFO"], env,
                       # Synthesis is throughput work sharing cores with the API: a lower priority
                       # keeps submits and polls fast while every core synthesizes.
                       # SIGTERM when orphaned, like every child: a cold shutdown (SIGQUIT) hangs
                       # when Redis dies at the same moment. What it leaves taken is requeued by
                       # the next start (see _requeue_orphans).
                       nice=WORKER_NICE)
            self.spawn("webhooks", [python, "-m", "celery", "-A", "worker.app", "worker", "--pool", "threads",
                                    "--concurrency", "8", "-Q", "webhooks", "-n", f"webhooks-{args.port}@%h",
                                    "--loglevel", "INFO"], env)
            flower_auth = os.environ.get("FLOWER_BASIC_AUTH")
            shown_auth = "(from FLOWER_BASIC_AUTH)"
            if not flower_auth:
                # Flower never runs open: without configured credentials, make one-off ones.
                flower_auth = f"admin:{secrets.token_urlsafe(12)}"
                shown_auth = flower_auth
            # Flower reads its options and Celery its broker from the environment: the password
            # and the Redis URL stay out of the command line, which every local user can read.
            # Flower keeps the events of its last --max_tasks tasks in memory: 2,000 (not its
            # 10,000), so its memory stays small and flat under a steady load.
            self.spawn("flower", [python, "-m", "celery", "flower", f"--address={args.host}",
                                  f"--port={args.flower_port}", "--max_tasks=2000"],
                       dict(env, FLOWER_BASIC_AUTH=flower_auth, CELERY_BROKER_URL=redis_url))
            shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
            api_url = f"http://{shown_host}:{args.port}/"
            if self.private_redis:
                shown_redis = f"private redis-server on 127.0.0.1:{_port(redis_url)}, data in {self.data_dir / 'redis'}"
            else:
                shown_redis = f"{status.redacted(redis_url)} (from {'--redis-url' if args.redis_url else 'REDIS_URL'})"
            status.write_state(self.data_dir, {
                "pid": os.getpid(), "started": time.time(), "redis_url": redis_url, "private": self.private_redis,
                "api_url": api_url, "flower_url": f"http://{shown_host}:{args.flower_port}/",
            })
            _say(f"voxq is starting (logs in {self.data_dir / 'logs'}):")
            _say(f"  web page and API  {api_url}")
            _say(f"  API docs          {api_url}docs")
            _say(f"  readiness         {api_url}readyz")
            _say(f"  Flower            http://{shown_host}:{args.flower_port}/  login {shown_auth}")
            _say(f"  Redis             {shown_redis}")
            _say(f"  {args.workers} CPU worker process(es); `voxq status` shows the queues; Ctrl-C stops everything")
            return self.watch()
        except KeyboardInterrupt:
            return 0
        finally:
            try:
                self.stop()
            finally:
                with contextlib.suppress(OSError):
                    (self.data_dir / status.STATE_FILE).unlink()

    def watch(self) -> int:
        """Supervise: start again whatever dies, after a back-off; return 1 on a crash loop."""
        restart_at: dict[str, float] = {}
        while True:
            now = time.monotonic()
            for name, proc in list(self.children):
                if name in restart_at or proc.poll() is None:
                    continue
                # What it left behind goes too: a dead worker's pool children must not run on,
                # their chunks return to the queue when their leases run out (worker/leases.py).
                _signal(proc, signal.SIGKILL, group=True)
                quick = now - self.started[name] < MIN_UPTIME_S
                deaths = self.quick_deaths[name] = self.quick_deaths.get(name, 0) + 1 if quick else 1
                log = self.data_dir / "logs" / f"{name}.log"
                if deaths >= CRASH_LOOP_DEATHS:
                    _say(f"voxq: {name} died {deaths} times in a row within {MIN_UPTIME_S} s of starting "
                         f"(last: {_how(proc.returncode)}); a crash loop, so stopping the cluster (see {log})",
                         err=True)
                    return 1
                delay = min(RESTART_MAX_S, RESTART_FIRST_S * 2 ** (deaths - 1))
                _say(f"voxq: {name} {_how(proc.returncode)}; starting it again in {delay:g} s (see {log})",
                     err=True)
                restart_at[name] = now + delay
            for name, when in list(restart_at.items()):
                if now >= when:
                    del restart_at[name]
                    cmd, env, nice, death_signal = self.specs[name]
                    self.spawn(name, cmd, env, nice=nice, death_signal=death_signal)
            time.sleep(0.2)

    def _jobs_in_flight(self) -> int | None:
        if not self.redis_url:
            return None
        try:
            return len(status.synthesis_in_flight(status.open_store(self.redis_url)))
        except Exception:  # only for the message: Redis may already be gone
            return None

    def stop(self) -> None:
        """First the API, workers and Flower, together; Redis last, so no one loses its broker mid-job.

        The workers finish the chunks they are speaking (a warm shutdown) within the grace period.
        After it, or at a second Ctrl-C, Celery's cold shutdown hands each unfinished chunk back
        to its queue (acks_late), and the next start runs it again.
        """
        hurry = threading.Event()
        # From here a signal is a request to hurry, never an exception that could cut this short.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: hurry.set())
        rest = [(name, proc) for name, proc in self.children if name != "redis"]
        redis = [(name, proc) for name, proc in self.children if name == "redis"]
        if any(proc.poll() is None for _, proc in rest):
            jobs = self._jobs_in_flight()
            if jobs:
                _say(f"voxq: stopping: waiting for {jobs} job(s) in flight to finish "
                     "(Ctrl-C again stops at once; they go back to the queue)", err=True)
            else:
                _say("voxq: stopping", err=True)
            for _, proc in rest:
                _signal(proc, signal.SIGTERM)
            if not self._wait(rest, kill_after=self.grace_s, hurry=hurry, kill=False):
                _say("voxq: stopping at once; unfinished jobs go back to the queue", err=True)
                for name, proc in rest:
                    # SIGQUIT: Celery's cold shutdown (requeue) and gunicorn's quick exit.
                    _signal(proc, signal.SIGKILL if name == "flower" else signal.SIGQUIT)
                self._wait(rest, kill_after=QUICK_GRACE_S)
        for _, proc in redis:
            _signal(proc, signal.SIGTERM)  # Redis writes its append-only file out before exiting
        self._wait(redis, kill_after=GRACE_S)
        self.children.clear()

    @staticmethod
    def _wait(children, kill_after: float, hurry: threading.Event | None = None, kill: bool = True) -> bool:
        """Wait for every child; after kill_after, kill the groups of those still there (or, with
        kill=False, return False). Returns False when `hurry` was set before they were all gone.
        """
        deadline = time.monotonic() + kill_after
        while True:
            running = [(name, proc) for name, proc in children if proc.poll() is None]
            if not running:
                return True
            if hurry is not None and hurry.is_set():
                return False
            if time.monotonic() > deadline:
                if not kill:
                    return False
                for name, proc in running:
                    _signal(proc, signal.SIGKILL, group=True)
                deadline = time.monotonic() + 5
            time.sleep(0.1)


def _how(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"


def _signal(proc: subprocess.Popen, sig: int, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(proc.pid, sig)
        elif proc.poll() is None:
            proc.send_signal(sig)


def cmd_up(args) -> int:
    return Cluster(args).run()


def add_parser(sub) -> None:
    up = sub.add_parser("up", help="start Redis, the API, workers and Flower on this machine")
    up.add_argument("--host", default="127.0.0.1", help="address for the API and Flower (default 127.0.0.1)")
    up.add_argument("--port", type=int, default=5000, help="API port (default 5000)")
    up.add_argument("--flower-port", type=int, default=5555, help="Flower port (default 5555)")
    up.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="CPU worker processes (default: one per core)")
    up.add_argument("--data-dir", default=os.environ.get("VOXQ_DATA_DIR", "./data"), help="audio and logs")
    up.add_argument("--redis-url", help="use this Redis (default REDIS_URL, else a private redis-server "
                                        "in the data directory)")
    up.set_defaults(func=cmd_up)
