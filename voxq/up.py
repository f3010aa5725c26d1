"""`voxq up`: Redis, the API, the workers and Flower on one machine, stopped together by Ctrl-C.

A child that dies is started again, after a back-off, and the log says why; only a crash loop
stops the cluster, saying so (voxq/supervisor.py). The children never outlive `voxq up`, and one
data directory serves one `voxq up` at a time (voxq/datadir.py). It records itself in the user's
state directory (voxq/registry.py), so `voxq status` finds it from any folder.
"""
from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from pathlib import Path

from voxq import datadir, registry
from voxq.broker import port_of, redacted
from voxq.cluster import Cluster, ClusterConfig, is_ready
from voxq.errors import CliError
from voxq.network import is_loopback
from voxq.supervisor import say


def cmd_up(args) -> int:
    from shared.config import Settings, SettingsError
    from shared.keys import KeysError, keys_configured

    try:
        settings = Settings.load()
        configured = keys_configured(settings.keys)
    except SettingsError as exc:
        raise CliError(f"invalid settings: {exc}") from exc
    except KeysError as exc:
        raise CliError(f"API keys are misconfigured: {exc}") from exc
    if not is_loopback(args.host) and not configured:
        raise CliError(
            f"refusing to bind {args.host} without API keys: anyone on the network could use the "
            "cluster. Create one with `voxq keys create` and set VOXQ_API_KEYS or VOXQ_API_KEYS_FILE, "
            "or bind 127.0.0.1"
        )
    data_dir = Path(args.data_dir or settings.data_dir).resolve()
    # Checked before anything starts: else the first child to need them would crash-loop.
    datadir.check_writable(data_dir)
    _check_engine(settings)
    given_redis = args.redis_url or settings.cli.redis_url
    given = None
    if given_redis:
        if args.redis_ha:
            raise CliError("--redis-ha starts a private Redis set: give it without --redis-url or REDIS_URL")
        try:  # read again with this URL: a Sentinel URL needs VOXQ_REDIS_SENTINEL_MASTER
            given = Settings.load(redis_url=given_redis).redis
        except SettingsError as exc:
            raise CliError(f"invalid settings: {exc}") from None
    flower_auth = settings.cli.flower_basic_auth
    shown_auth = "(from FLOWER_BASIC_AUTH)"
    if not flower_auth:
        # Flower never runs open: without configured credentials, make one-off ones.
        flower_auth = f"admin:{secrets.token_urlsafe(12)}"
        shown_auth = flower_auth
    cluster = Cluster(ClusterConfig(
        data_dir=data_dir, host=args.host, port=args.port, workers=args.workers, redis=given,
        redis_ha=args.redis_ha, ha_down_after_ms=settings.cli.redis_ha_down_after_ms,
        ha_failover_timeout_ms=settings.cli.redis_ha_failover_timeout_ms,
        flower_port=args.flower_port, flower_auth=flower_auth, grace_s=settings.jobs.stop_grace_s,
    ))
    held = datadir.lock(data_dir)  # noqa: F841 (held by this frame, so for as long as `voxq up` runs)
    state_dir = settings.cli.state_dir

    def interrupt(*_):
        raise KeyboardInterrupt()

    # Explicit handlers: a shell that starts us in the background leaves SIGINT ignored. A
    # closed terminal (SIGHUP) stops the cluster like Ctrl-C does.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, interrupt)
    started = time.monotonic()
    stopping = threading.Event()
    running = False
    try:
        cluster.start()
        running = True
        redis = cluster.redis
        redis_url = redis.url
        api_url = f"{cluster.url}/"
        shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        if args.redis_ha:
            shown_redis = (f"private master, 2 replicas and 3 sentinels (master name {redis.sentinel_master!r}, "
                           f"sentinels on 127.0.0.1 ports {', '.join(str(p) for _, p in redis.sentinels)}), "
                           f"data in {data_dir / 'redis-ha'}")
        elif cluster.private_redis:
            shown_redis = f"private redis-server on 127.0.0.1:{port_of(redis_url)}, data in {data_dir / 'redis'}"
        else:
            shown_redis = f"{redacted(redis_url)} (from {'--redis-url' if args.redis_url else 'REDIS_URL'})"
        datadir.write_state(data_dir, {
            "pid": os.getpid(), "started": time.time(), "redis_url": redis_url, "private": cluster.private_redis,
            # What else `voxq status` needs to reach a Sentinel set (None for a plain Redis).
            "redis_sentinel_master": redis.sentinel_master, "redis_sentinel_password": redis.sentinel_password,
            "api_url": api_url, "flower_url": f"http://{shown_host}:{args.flower_port}/", "data_dir": str(data_dir),
        })
        try:
            registry.record(state_dir, data_dir, os.getpid())
        except OSError as exc:  # a convenience: `voxq status --data-dir` still finds it
            say(f"voxq: cannot record this cluster in {state_dir} ({exc.strerror or exc}); "
                f"`voxq status` finds it with --data-dir {data_dir}", err=True)
        say(f"voxq is starting (logs in {data_dir / 'logs'}); it serves once a worker has loaded the voice, "
            "and a \"voxq is ready\" line says so:")
        say(f"  web page and API  {api_url}")
        say(f"  API docs          {api_url}docs")
        say(f"  readiness         {api_url}readyz")
        say(f"  Flower            http://{shown_host}:{args.flower_port}/  login {shown_auth}")
        say(f"  Redis             {shown_redis}")
        say(f"  {args.workers} CPU worker process(es); `voxq status` shows the queues; Ctrl-C stops everything")
        threading.Thread(target=_announce_ready, args=(api_url, started, stopping), name="ready",
                         daemon=True).start()
        return cluster.watch()
    except KeyboardInterrupt:
        return 0
    finally:
        stopping.set()  # no "ready" line after the stop began
        began = time.monotonic()
        try:
            unfinished = cluster.stop()
            if running:  # a start that failed said why, in one line; "stopped" would be noise
                left = ""
                if unfinished:
                    jobs = "1 unfinished job resumes" if unfinished == 1 else f"{unfinished} unfinished jobs resume"
                    left = f"; {jobs} {cluster.resumes}"
                say(f"voxq: stopped in {time.monotonic() - began:.1f} s{left}", err=True)
        finally:
            datadir.remove_state(data_dir)
            registry.forget(state_dir, data_dir)


def _announce_ready(api_url: str, started: float, stopping: threading.Event) -> None:
    """Say once, on stdout, when /readyz first answers ready: the banner comes before any worker
    has loaded the voice, and until one has, every job only waits."""
    import requests

    session = requests.Session()
    while not stopping.is_set():
        if is_ready(api_url, session):
            if not stopping.is_set():
                say(f"voxq is ready: {api_url} ({time.monotonic() - started:.1f} s after the start)")
            return
        stopping.wait(0.2)


def _check_engine(settings) -> None:
    """The workers' own preflight (the engine's name, its files), run here once: an unknown engine
    is one line now, not a cluster that starts and stops on a crash loop seconds later."""
    from worker.engines import EngineError, preflight

    try:
        preflight(settings)
    except EngineError as exc:
        raise CliError(f"the workers cannot start: {exc}") from None


def add_parser(sub) -> None:
    up = sub.add_parser("up", help="start Redis, the API, workers and Flower on this machine")
    up.add_argument("--host", default="127.0.0.1", help="address for the API and Flower (default 127.0.0.1)")
    up.add_argument("--port", type=int, default=5000, help="API port (default 5000)")
    up.add_argument("--flower-port", type=int, default=5555, help="Flower port (default 5555)")
    up.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="CPU worker processes (default: one per core)")
    up.add_argument("--data-dir", help="audio and logs (default VOXQ_DATA_DIR, else ./data)")
    up.add_argument("--redis-url", help="use this Redis (default REDIS_URL, else a private redis-server "
                                        "in the data directory)")
    up.add_argument("--redis-ha", action="store_true",
                    help="start a private Redis master, two replicas and three sentinels instead of one "
                         "redis-server, to try failover on this machine (README, \"High availability\")")
    up.set_defaults(func=cmd_up)
