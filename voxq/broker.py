"""The Redis a cluster runs on: a given one that must answer, or a private redis-server in the
data directory, whose unfinished jobs a start puts back in their queues."""
from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from shared.config import environment
from voxq.errors import CliError
from voxq.network import free_port
from voxq.supervisor import Supervisor, say


def redacted(url: str) -> str:
    """The URL without its password, for banners and status lines."""
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


def answers(url: str) -> bool:
    from shared.store import answers as store_answers

    return store_answers(url)


def given(url: str) -> str:
    """A Redis someone else runs: it must answer now."""
    if not answers(url):
        raise CliError(f"Redis at {redacted(url)} does not answer")
    return url


def start_private(supervisor: Supervisor, folder: Path) -> str:
    """A redis-server of our own in `folder`, never whatever listens on 6379, whose jobs would mix
    with ours; a password keeps other local users' clients out too. Returns its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise CliError("redis-server is not installed (apt-get install redis-server), "
                       "and neither --redis-url nor REDIS_URL is given")
    port = free_port()
    password = secrets.token_urlsafe(24)
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
    proc = supervisor.spawn("redis", [binary, str(config)], environment())
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    for _ in range(200):
        if answers(url):
            requeue_orphans(url)
            return url
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise CliError(f"redis-server did not start; see {supervisor.log('redis')}")


def requeue_orphans(url: str) -> None:
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
        say(f"voxq: could not requeue unfinished jobs now ({exc}); they return after the "
            "visibility timeout", err=True)
