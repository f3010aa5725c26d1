"""`voxq status`: a running cluster's workers, queues and jobs in flight, read from its Redis."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from voxq import datadir, registry
from voxq.broker import redacted
from voxq.errors import CliError
from voxq.settings import load as load_settings


def synthesis_in_flight(store) -> list:
    """One taken message per job being spoken now (a job's chunks may be on several workers)."""
    from shared.tasks import SYNTHESIZE, SYNTHESIZE_CHUNK

    jobs = {}
    for taken in store.queues.in_flight():
        if taken.task in (SYNTHESIZE, SYNTHESIZE_CHUNK):
            jobs.setdefault(taken.first_arg, taken)
    return list(jobs.values())


def open_store(where):
    """A store of the Redis `where` (a RedisTarget, or a plain URL)."""
    from shared.store import Store

    return Store.open(where, result_ttl_s=60)


def _target(state: dict):
    """The Redis a `voxq up` recorded: its URL and, for a Sentinel set, its master's name."""
    from shared.config import RedisTarget

    return RedisTarget(state["redis_url"], state.get("redis_sentinel_master"), state.get("redis_sentinel_password"))


def _resolve(args, settings) -> tuple:
    """The Redis to read: --redis-url or REDIS_URL; else the `voxq up` of --data-dir; else the one
    in VOXQ_DATA_DIR (./data), or the one recorded in the user's state directory (voxq/registry.py)."""
    given = args.redis_url or settings.cli.redis_url
    if given:
        # Read again with this URL: a Sentinel URL needs VOXQ_REDIS_SENTINEL_MASTER beside it.
        return load_settings(redis_url=given).redis, {}
    data_dir = Path(args.data_dir or settings.data_dir).resolve()
    state = datadir.read_state(data_dir)
    # No state, or a state file left by a `voxq up` that was killed: nothing runs there.
    if state is not None and datadir.held(data_dir):
        return _target(state), state
    if args.data_dir:
        raise CliError(f"no running `voxq up` found in {data_dir}: give --data-dir, --redis-url or REDIS_URL")
    state_dir = settings.cli.state_dir
    live, stale = registry.running(state_dir)
    for gone in stale:
        print(f"voxq: ignoring a stale record in {state_dir}: the `voxq up` of {gone.data_dir} "
              f"(pid {gone.pid}) is no longer running", file=sys.stderr)
    if len(live) == 1:
        return _target(live[0].state), live[0].state
    if live:
        shown = ", ".join(str(found.data_dir) for found in live)
        raise CliError(f"{len(live)} `voxq up`s are running (data in {shown}): give --data-dir")
    raise CliError(f"no running `voxq up` found in {data_dir}, nor recorded in {state_dir}: "
                   "give --data-dir, --redis-url or REDIS_URL")


def _master_address(store) -> str:
    """Where the sentinels say the master is now, for the status line."""
    try:
        host, port = store.master_address()
    except Exception:  # noqa: BLE001 - only for the line: the reads above already answered
        return "?"
    return f"{host}:{port}"


def _api_ready(url: str) -> str:
    import requests

    try:
        response = requests.get(f"{url.rstrip('/')}/readyz", timeout=3)
    except requests.RequestException as exc:
        return f"not answering ({type(exc).__name__})"
    if response.status_code == 200:
        return "ready"
    try:
        return f"not ready: {response.json()['error']['message']}"
    except (ValueError, KeyError, TypeError):
        return f"not ready (HTTP {response.status_code})"


def cmd_status(args) -> int:
    from shared.store import Unavailable
    from shared.tasks import DELIVER_WEBHOOK, SYNTHESIS_QUEUES, WEBHOOKS

    settings = load_settings()
    target, state = _resolve(args, settings)
    url = target.url
    ttl = settings.jobs.heartbeat_ttl_s
    store = open_store(target)
    try:
        store.ping()
        names = store.workers.alive(ttl)
        consumed = store.workers.queues_of(names)
        lengths = store.queues.depths((*SYNTHESIS_QUEUES, WEBHOOKS))
        flying = store.queues.in_flight()
        jobs = synthesis_in_flight(store)
        records = {taken.first_arg: store.jobs.get(taken.first_arg) for taken in jobs}
    except Unavailable as exc:
        raise CliError(f"Redis at {redacted(url)} does not answer: {exc}") from exc

    shown = redacted(url)
    if target.sentinel:
        shown = f"{shown} (Sentinel, master {target.sentinel_master!r} at {_master_address(store)})"
    lines = [f"Redis      {shown}" + (" (private, started by voxq up)" if state.get("private") else "")]
    if state.get("api_url"):
        lines.append(f"API        {state['api_url']}  {_api_ready(state['api_url'])}")
    if state.get("pid"):
        since = time.strftime("%Y-%m-%d %H:%M", time.localtime(state.get("started", 0)))
        lines.append(f"voxq up    pid {state['pid']}, since {since}" +
                     (f", data in {state['data_dir']}" if state.get("data_dir") else ""))
    lines.append(f"workers    {len(names)} alive" + (":" if names else ""))
    for name in names:
        lines.append(f"             {name}  ({', '.join(consumed.get(name) or ['?'])})")
    lines.append("queues     " + " · ".join(f"{queue} {n}" for queue, n in lengths.items()))
    lines.append(f"in flight  {len(jobs)} job(s)" + (":" if jobs else ""))
    for taken in jobs:
        record = records.get(taken.first_arg)
        detail = "no record"
        if record is not None:
            detail = record.status
            if record.progress.segments_total:
                detail += f", {record.progress.segments_done}/{record.progress.segments_total} segments"
                detail += f", {record.progress.chunks_done}/{record.progress.chunks_total} chunks"
        lines.append(f"             {taken.first_arg}  {taken.queue}  {detail}")
    others = sum(1 for taken in flying if taken.task == DELIVER_WEBHOOK)
    if others:
        lines.append(f"             and {others} webhook deliver{'y' if others == 1 else 'ies'}")
    print("\n".join(lines))
    return 0


def add_parser(sub) -> None:
    status = sub.add_parser("status", help="workers, queues and jobs in flight of a running cluster")
    status.add_argument("--data-dir", help="the data directory of a running `voxq up` (default VOXQ_DATA_DIR, "
                                           "else ./data, else the one `voxq up` recorded in XDG_STATE_HOME/voxq)")
    status.add_argument("--redis-url", help="read this Redis instead (default REDIS_URL, else the data directory's)")
    status.set_defaults(func=cmd_status)
