"""`voxq up`: Redis, the API, the workers and Flower on one machine, stopped together by Ctrl-C."""
from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from voxq.cli import CliError


WORKER_NICE = 10


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


def _redis_answers(url: str) -> bool:
    from shared.store import answers

    return answers(url)


class Cluster:
    def __init__(self, args):
        self.args = args
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.data_dir = Path(args.data_dir).resolve()

    def spawn(self, name: str, cmd: list[str], env: dict, nice: int = 0) -> None:
        log = open(self.data_dir / "logs" / f"{name}.log", "ab")
        # Each child in its own session, so a Ctrl-C reaches it only through us, in order.
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=(lambda: os.nice(nice)) if nice else None)
        self.children.append((name, proc))

    def start_redis(self) -> str:
        url = self.args.redis_url or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
        if _redis_answers(url):
            return url
        binary = shutil.which("redis-server")
        if binary is None:
            raise CliError(f"Redis at {url} does not answer and redis-server is not installed")
        port = _free_port()
        folder = self.data_dir / "redis"
        folder.mkdir(parents=True, exist_ok=True)
        self.spawn("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                             "--maxmemory-policy", "noeviction"], dict(os.environ))
        url = f"redis://127.0.0.1:{port}/0"
        for _ in range(100):
            if _redis_answers(url):
                return url
            time.sleep(0.05)
        raise CliError(f"redis-server did not start; see {self.data_dir / 'logs' / 'redis.log'}")

    def run(self) -> int:
        args = self.args
        from shared.config import SettingsError, Settings
        from shared.keys import KeysError, keys_configured

        try:
            configured = keys_configured(Settings.load().keys)
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
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        def interrupt(*_):
            raise KeyboardInterrupt()

        # Explicit handlers: a shell that starts us in the background leaves SIGINT ignored.
        signal.signal(signal.SIGTERM, interrupt)
        signal.signal(signal.SIGINT, interrupt)
        try:
            redis_url = self.start_redis()
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
            self.spawn("flower", [python, "-m", "celery", "--broker", redis_url, "flower",
                                  f"--address={args.host}", f"--port={args.flower_port}",
                                  f"--basic-auth={flower_auth}"], env)
            shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
            print(f"voxq is starting (logs in {self.data_dir / 'logs'}):", flush=True)
            print(f"  web page and API  http://{shown_host}:{args.port}/", flush=True)
            print(f"  readiness         http://{shown_host}:{args.port}/readyz", flush=True)
            print(f"  Flower            http://{shown_host}:{args.flower_port}/  login {shown_auth}", flush=True)
            print(f"  Redis             {redis_url}", flush=True)
            print(f"  {args.workers} CPU worker process(es); Ctrl-C stops everything", flush=True)
            return self.watch()
        except KeyboardInterrupt:
            return 0
        finally:
            self.stop()

    def watch(self) -> int:
        while True:
            for name, proc in self.children:
                if proc.poll() is not None:
                    print(f"voxq: {name} exited with status {proc.returncode}; stopping the cluster "
                          f"(see {self.data_dir / 'logs' / (name + '.log')})", file=sys.stderr, flush=True)
                    return 1
            time.sleep(0.5)

    def stop(self) -> None:
        # Reverse order: the API and workers go first, Redis last, so no one loses its broker mid-job.
        for name, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20 if name != "redis" else 10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.children.clear()


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
    up.add_argument("--redis-url", help="use this Redis (default REDIS_URL, else a private redis-server)")
    up.set_defaults(func=cmd_up)
