"""The Redis a cluster runs on: a given one that must answer, or a private redis-server in the
data directory (or, with `--redis-ha`, a private master, two replicas and three sentinels), whose
unfinished jobs a start puts back in their queues."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from shared.config import RedisTarget, environment
from voxq.errors import CliError
from voxq.network import free_port
from voxq.supervisor import Supervisor, say


def redacted(url: str) -> str:
    """The URL without its password, for banners and status lines (each entry of a Sentinel URL)."""
    if ";" in url:
        return ";".join(redacted(entry) for entry in url.split(";"))
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def port_of(url: str) -> int | None:
    return urlsplit(url).port


def answers(where: RedisTarget | str) -> bool:
    from shared.store import answers as store_answers

    return store_answers(where)


def given(target: RedisTarget) -> RedisTarget:
    """A Redis someone else runs: it (its master, with Sentinel) must answer now."""
    if not answers(target):
        what = f"the master {target.sentinel_master!r} of the sentinels" if target.sentinel else "Redis"
        raise CliError(f"{what} at {redacted(target.url)} does not answer")
    return target


def _redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise CliError("redis-server is not installed (apt-get install redis-server), "
                       "and neither --redis-url nor REDIS_URL is given")
    return binary


def _write_private(path: Path, lines: list[str]) -> None:
    # Passwords go in files only we can read, never on a command line that `ps` shows.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join((*lines, "")))
    os.chmod(path, 0o600)


def _node_lines(folder: Path, port: int, password: str, max_lag_s: int) -> list[str]:
    # masterauth on every node: any of them may be a replica after a failover.
    return [f"port {port}", "bind 127.0.0.1", f'dir "{folder}"', "appendonly yes", "appendfsync everysec",
            'save ""', "maxmemory-policy noeviction", f"requirepass {password}", f"masterauth {password}",
            # A replica that comes back resyncs at once, not after Redis's default 5 s of waiting
            # for others to share the transfer: until it has, the master has one replica fewer.
            "repl-diskless-sync-delay 0",
            # A master that heard from no replica for max_lag_s takes no writes (NOREPLICAS): an
            # old master back from a pause (SIGSTOP, a partition) would otherwise take writes
            # from clients still connected to it until the sentinels demote it, and they would go
            # with its demotion. Clients reconnect on NOREPLICAS and find the new master.
            "min-replicas-to-write 1", f"min-replicas-max-lag {max_lag_s}"]


MASTER_NAME = "voxq"
SENTINELS = 3
# Two replicas, not one: voxq waits for one replica before it acknowledges a write, and after a
# failover the new master still has one (a single replica would leave it none until the old
# master is back as a replica, and every submit a 503 meanwhile: 15 s and more, measured).
REPLICAS = 2


def start_private_ha(supervisor: Supervisor, folder: Path, down_after_ms: int, failover_timeout_ms: int,
                     restart_after_s: float) -> RedisTarget:
    """A private master, two replicas and three sentinels (quorum 2) in `folder`, for trying
    failover on one machine and for the tests: the same engine as a production Sentinel set.

    The first start writes their config files and keeps the ports and password in ha.json; a
    later start reuses both as they are, since Sentinel rewrites the files with who is master now
    (starting node 0 as master again would have it resync the replica from older data). A node
    that dies is started again only after `restart_after_s`: long enough for the sentinels to
    promote the replica first, so the old master comes back as a replica, never as a master
    with the last second its append-only file had not written yet."""
    binary = _redis_binary()
    folder.mkdir(parents=True, exist_ok=True)
    layout = folder / "ha.json"
    if layout.exists():
        known = json.loads(layout.read_text())
    else:
        known = {"password": secrets.token_urlsafe(24), "nodes": [free_port() for _ in range(1 + REPLICAS)],
                 "sentinels": [free_port() for _ in range(SENTINELS)]}
        _write_private(layout, [json.dumps(known)])
        master = known["nodes"][0]
        for n, port in enumerate(known["nodes"]):
            node = folder / f"node-{n}"
            node.mkdir(exist_ok=True)
            lines = _node_lines(node, port, known["password"], max(2, round(down_after_ms / 1000)))
            if n:
                lines.append(f"replicaof 127.0.0.1 {master}")
            _write_private(node / "redis.conf", lines)
        for n, port in enumerate(known["sentinels"]):
            node = folder / f"sentinel-{n}"
            node.mkdir(exist_ok=True)
            # The sentinels share the nodes' password: for clients (requirepass), for each
            # other (sentinel-pass) and for the nodes they watch (auth-pass).
            _write_private(node / "sentinel.conf", [
                f"port {port}", "bind 127.0.0.1", f'dir "{node}"', f"requirepass {known['password']}",
                f"sentinel sentinel-pass {known['password']}",
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2",
                f"sentinel auth-pass {MASTER_NAME} {known['password']}",
                f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}",
                f"sentinel failover-timeout {MASTER_NAME} {failover_timeout_ms}",
                f"sentinel parallel-syncs {MASTER_NAME} 1"])
    password = known["password"]
    for n, _ in enumerate(known["nodes"]):
        supervisor.spawn(f"redis-{n}", [binary, str(folder / f"node-{n}" / "redis.conf")], environment(),
                         restart_after_s=restart_after_s)
    for n, _ in enumerate(known["sentinels"]):
        supervisor.spawn(f"sentinel-{n}", [binary, str(folder / f"sentinel-{n}" / "sentinel.conf"), "--sentinel"],
                         environment())
    target = RedisTarget(";".join(f"sentinel://:{password}@127.0.0.1:{port}/0" for port in known["sentinels"]),
                         MASTER_NAME, password)
    for _ in range(400):
        if answers(target):
            requeue_orphans(target)
            return target
        if any(name.startswith(("redis-", "sentinel-")) for name in supervisor.exited()):
            break
        time.sleep(0.05)
    raise CliError(f"the private Redis master, replicas and sentinels did not start; see the logs in {supervisor.logs}")


def start_private(supervisor: Supervisor, folder: Path) -> RedisTarget:
    """A redis-server of our own in `folder`, never whatever listens on 6379, whose jobs would mix
    with ours; a password keeps other local users' clients out too."""
    binary = _redis_binary()
    port = free_port()
    password = secrets.token_urlsafe(24)
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "redis.conf"
    _write_private(config, [
        f"port {port}", "bind 127.0.0.1", f'dir "{folder}"', "appendonly yes", "appendfsync everysec",
        'save ""', "maxmemory-policy noeviction", f"requirepass {password}"])
    proc = supervisor.spawn("redis", [binary, str(config)], environment())
    target = RedisTarget(f"redis://:{password}@127.0.0.1:{port}/0")
    for _ in range(200):
        if answers(target):
            requeue_orphans(target)
            return target
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise CliError(f"redis-server did not start; see {supervisor.log('redis')}")


def requeue_orphans(target: RedisTarget) -> None:
    """Put the jobs a previous run left taken-but-unfinished back in their queues.

    Only for the private Redis: we hold the data directory's lock, so no worker of ours is
    alive, and every unacknowledged message belongs to a worker that was stopped at once or
    killed. Without this they would wait out the visibility timeout (an hour by default).
    """
    from kombu import Connection

    try:
        options = {"visibility_timeout": 0, **target.transport_options()}
        with Connection(target.url, transport_options=options) as conn:
            qos = conn.default_channel.qos
            qos.restore_visible(num=100_000, interval=1)
    except Exception as exc:  # a convenience: a failure here must not stop the cluster
        say(f"voxq: could not requeue unfinished jobs now ({exc}); they return after the "
            "visibility timeout", err=True)
