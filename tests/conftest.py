"""Shared fixtures: a private real Redis, the real engine, a real Celery worker, the real app, and
one live cluster per module that asks for it. The helpers they use live in tests/support.py."""
from __future__ import annotations

import pytest
import redis

from tests.support import LiveCluster, RedisServer, Worker


@pytest.fixture(scope="session", autouse=True)
def state_home(tmp_path_factory):
    """XDG_STATE_HOME of its own for the whole run, inherited by every `voxq` the tests start:
    a `voxq up` records itself there (voxq/registry.py), never in the user's ~/.local/state."""
    path = tmp_path_factory.mktemp("state")
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_STATE_HOME", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def settings():
    from shared.config import Settings

    return Settings.load()


@pytest.fixture(scope="session")
def engine(settings):
    from worker.engines import load_engine

    return load_engine(settings)


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def worker(redis_url, data_dir, tmp_path):
    proc = Worker(redis_url, data_dir, tmp_path / "worker.log")
    proc.wait_ready()
    yield proc
    proc.stop()


@pytest.fixture
def app(redis_url, data_dir):
    from api.app import create_app

    return create_app({"TESTING": True, "VOXQ_SETTINGS": {"redis_url": redis_url, "data_dir": data_dir,
                                                           "jobs": {"heartbeat_ttl_s": 6}}})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory):
    """The live cluster of a module (tests/support.py), started once for it: starting is the slow
    part, and these tests only add jobs. The module's `live_cluster` mark gives its options."""
    mark = request.node.get_closest_marker("live_cluster")
    live = LiveCluster(tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2]),
                       **(mark.kwargs if mark else {}))
    yield live
    live.stop()


@pytest.fixture(scope="session")
def sample_rate(settings) -> int:
    """The configured engine's own sample rate (its class says it; no model is loaded): what
    audio comes at when no rate is asked for."""
    from worker.engines import engine_class

    return engine_class(settings).sample_rate
