"""docker-compose.yml: loaded by a real compose implementation, checked against the Compose spec.

No Docker engine is needed: podman-compose (a compose implementation from PyPI) parses,
interpolates and resolves profiles offline with --dry-run; the Compose Specification's JSON
schema (as vendored in check-jsonschema) and the compose_spec parser then check the result.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from shared.config import Settings

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
BASE_SERVICES = {"redis", "api", "worker-cpu", "webhooks", "flower"}
APP_SERVICES = {"api", "worker-cpu", "worker-gpu", "webhooks", "flower"}
# Every variable of the service contract; .env.example lists each one.
CONTRACT_VARIABLES = {
    "REDIS_URL", "VOXQ_DATA_DIR", "VOXQ_ENGINE", "VOXQ_DEVICE", "VOXQ_MODEL_DIR",
    "VOXQ_WORKER_CONCURRENCY", "VOXQ_ENGINE_THREADS", "VOXQ_MAX_CHARS", "VOXQ_RESULT_TTL_S",
    "VOXQ_API_KEYS", "VOXQ_API_KEYS_FILE", "VOXQ_WEBHOOK_SECRETS_FILE",
    "VOXQ_WEBHOOK_ALLOW_NETWORKS", "FLOWER_BASIC_AUTH", "VOXQ_LOG_LEVEL",
    "VOXQ_RATE_LIMIT_PER_MINUTE", "VOXQ_CHARS_PER_DAY",
}


def run_compose(tmp_path, *args, env_file=ENV_EXAMPLE):
    """`podman-compose --dry-run ... config`: parse, interpolate, resolve profiles; no engine."""
    pytest.importorskip("podman_compose")
    # A clean environment, so a REDIS_PASSWORD in the developer's shell cannot hide a gap.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-c", "import podman_compose; podman_compose.main()", "--dry-run",
         "--env-file", str(env_file), "-f", str(COMPOSE_FILE), *args, "config"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )


def config(tmp_path, *args, env_file=ENV_EXAMPLE):
    result = run_compose(tmp_path, *args, env_file=env_file)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def cpu(tmp_path_factory):
    """The file as compose resolves it with .env.example and no profile."""
    return config(tmp_path_factory.mktemp("compose"))


@pytest.fixture(scope="module")
def gpu(tmp_path_factory):
    """The same with --profile gpu."""
    return config(tmp_path_factory.mktemp("compose"), "--profile", "gpu")


HA_SERVICES = {"redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"}
# The .env.example lines the ha profile asks to uncomment.
HA_LINES = ("VOXQ_COMPOSE_REDIS_URL", "VOXQ_REDIS_SENTINEL_MASTER", "VOXQ_REDIS_SENTINEL_PASSWORD",
            "VOXQ_REDIS_WAIT_REPLICAS")


def ha_env_file(folder: Path) -> Path:
    """.env.example with its "High availability" lines uncommented, as an operator would."""
    lines = [re.sub(rf"^# ({'|'.join(HA_LINES)})=", r"\1=", line) for line in ENV_EXAMPLE.read_text().splitlines()]
    path = folder / "env-ha"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def ha(tmp_path_factory):
    """The file with --profile ha and the HA lines of .env.example set."""
    folder = tmp_path_factory.mktemp("compose")
    return config(folder, "--profile", "ha", env_file=ha_env_file(folder))


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose_schema():
    pytest.importorskip("check_jsonschema")
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendored.joinpath("compose-spec.json").read_text())


def schema_errors(schema, document):
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(document)]


def env_example_values():
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            values.setdefault(match.group(1), match.group(2))
    return values


# --- a compose implementation loads it -------------------------------------------------------


def test_compose_loads_the_cpu_stack(cpu):
    services = cpu["services"]
    assert set(services) == BASE_SERVICES


def test_compose_adds_the_gpu_worker_only_under_its_profile(gpu):
    services = gpu["services"]
    assert set(services) == BASE_SERVICES | {"worker-gpu"}


@pytest.mark.parametrize("variable", ["REDIS_PASSWORD", "FLOWER_BASIC_AUTH", "VOXQ_API_KEYS"])
def test_compose_refuses_to_start_without_a_secret(tmp_path, variable):
    env_file = tmp_path / "env"
    env_file.write_text("".join(line + "\n" for line in ENV_EXAMPLE.read_text().splitlines()
                                if not line.startswith(f"{variable}=")))
    result = run_compose(tmp_path, env_file=env_file)
    assert result.returncode != 0
    assert variable in result.stderr


def test_compose_adds_a_replica_and_three_sentinels_only_under_the_ha_profile(cpu, ha):
    assert set(ha["services"]) == BASE_SERVICES | HA_SERVICES
    assert not HA_SERVICES & set(cpu["services"])
    assert {"redis-replica-data", "sentinel-1-data"} <= set(ha["volumes"])


def test_the_ha_profile_points_every_app_service_at_the_sentinels(cpu, ha):
    services = ha["services"]
    url = services["api"]["environment"]["REDIS_URL"]
    for name in ("api", "worker-cpu", "webhooks", "flower"):
        environment = services[name]["environment"]
        assert environment["REDIS_URL"] == url, name
        # Passed through from .env when it sets them (compose's own environment at run time).
        assert {"VOXQ_REDIS_SENTINEL_MASTER", "VOXQ_REDIS_SENTINEL_PASSWORD"} <= set(environment), name
    assert "VOXQ_REDIS_WAIT_REPLICAS" in services["api"]["environment"]
    # The URL and the master's name .env.example gives are what voxq's settings accept, and name
    # the sentinels this profile starts, with the master they monitor.
    values = env_example_values()
    master = values["VOXQ_REDIS_SENTINEL_MASTER"]
    target = Settings.load(redis_url=url, redis_sentinel_master=master, redis_sentinel_password="change-me").redis
    assert target.sentinels == [(f"sentinel-{n}", 26379) for n in (1, 2, 3)]
    assert target.password == "change-me" and target.replicas_to_wait == 1
    for n in (1, 2, 3):
        script = " ".join(services[f"sentinel-{n}"]["command"])
        assert f"sentinel monitor {master} redis 6379 2" in script
        assert "resolve-hostnames yes" in script and "--sentinel" in script
        assert services[f"sentinel-{n}"]["environment"]["SENTINEL_NAME"] == f"sentinel-{n}"
        assert f"sentinel-{n}-data:/data" in services[f"sentinel-{n}"]["volumes"]
    replica = " ".join(services["redis-replica"]["command"])
    assert "replicaof redis 6379" in replica and "masterauth" in replica and "--appendonly yes" in replica
    # Without the ha lines the same services keep the single Redis.
    assert cpu["services"]["api"]["environment"]["REDIS_URL"] == "redis://:change-me@redis:6379/0"


def test_the_ha_services_keep_their_password_off_the_command_line(ha, raw):
    for name in HA_SERVICES:
        script = " ".join(ha["services"][name]["command"])
        assert "change-me" not in script and "$REDIS_PASSWORD" in script, name
        assert raw["services"][name]["profiles"] == ["ha"], name


# --- the Compose specification ---------------------------------------------------------------


def test_file_matches_the_compose_spec_schema(raw, compose_schema):
    assert schema_errors(compose_schema, raw) == []


def test_interpolated_file_matches_the_compose_spec_schema(cpu, gpu, ha, compose_schema):
    assert schema_errors(compose_schema, cpu) == []
    assert schema_errors(compose_schema, gpu) == []
    assert schema_errors(compose_schema, ha) == []


def test_compose_spec_parser_accepts_the_interpolated_file(gpu, ha):
    compose_spec = pytest.importorskip("compose_spec")
    parsed = compose_spec.PyCompose.from_yaml(yaml.safe_dump(gpu)).to_spec()
    assert set(parsed.services) == BASE_SERVICES | {"worker-gpu"}
    (device,) = parsed.services["worker-gpu"].deploy.resources.reservations.devices
    assert device.driver == "nvidia" and device.count == 1 and device.capabilities == {"gpu"}
    ha_parsed = compose_spec.PyCompose.from_yaml(yaml.safe_dump(ha)).to_spec()
    assert set(ha_parsed.services) == BASE_SERVICES | HA_SERVICES


# --- what each service does ------------------------------------------------------------------


def test_redis_keeps_jobs_safe_and_needs_a_password(cpu, raw):
    redis = cpu["services"]["redis"]
    script = " ".join(redis["command"])
    for setting in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction",
                    "requirepass"):
        assert setting in script, setting
    # The password comes from the environment at run time and is never on the command line.
    assert '"$REDIS_PASSWORD"' in script
    assert "change-me" not in script
    assert raw["services"]["redis"]["environment"]["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")
    assert "REDISCLI_AUTH" in " ".join(redis["healthcheck"]["test"])
    assert "redis-data:/data" in redis["volumes"]
    assert redis["user"] == "redis"


def test_flower_runs_with_basic_auth_on_loopback(cpu, raw):
    flower = cpu["services"]["flower"]
    # Its app takes the broker settings from voxq's settings (a Sentinel's master name too).
    assert flower["command"] == ["celery", "-A", "shared.flower_app", "flower", "--port=5555", "--max_tasks=2000"]
    assert flower["environment"]["REDIS_URL"] == "redis://:change-me@redis:6379/0"
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == env_example_values()["FLOWER_BASIC_AUTH"]
    assert raw["services"]["flower"]["environment"]["FLOWER_BASIC_AUTH"].startswith(
        "${FLOWER_BASIC_AUTH:?")
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    assert "/healthcheck" in " ".join(flower["healthcheck"]["test"])


def test_gpu_worker_has_its_profile_and_a_device_reservation(raw):
    gpu = raw["services"]["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert gpu["environment"]["VOXQ_ENGINE"] == "fastspeech2-torch"
    assert gpu["environment"]["VOXQ_DEVICE"] == "cuda"
    assert gpu["command"] == ["celery", "-A", "worker.app", "worker", "--pool", "threads", "--concurrency", "16",
                              "-Q", "gpu-interactive,gpu-batch,interactive,batch",
                              "--loglevel", "INFO", "-n", "gpu@%h"]
    assert gpu["build"]["target"] == "worker-gpu"


def test_commands_follow_the_process_contract(cpu):
    services = cpu["services"]
    assert services["api"]["command"] == [
        "gunicorn", "-c", "python:api.gunicorn_conf", "--bind", "0.0.0.0:5000", "--workers", "2", "--threads", "4",
        "--worker-tmp-dir", "/tmp", "api.app:create_app()"]
    assert services["worker-cpu"]["command"] == [
        "sh", "-c", 'exec celery -A worker.app worker --pool prefork --concurrency '
                    '"${VOXQ_WORKER_CONCURRENCY}" -Q interactive,batch --loglevel INFO -n cpu@%h']
    assert services["worker-cpu"]["environment"]["VOXQ_WORKER_CONCURRENCY"] == "2"
    assert services["webhooks"]["command"] == [
        "celery", "-A", "worker.app", "worker", "--pool", "threads", "--concurrency", "8",
        "-Q", "webhooks", "--loglevel", "INFO", "-n", "webhooks@%h"]


def test_workers_ping_their_own_node_and_get_time_to_finish_jobs(gpu):
    services = gpu["services"]
    for name, node in (("worker-cpu", "cpu"), ("worker-gpu", "gpu"), ("webhooks", "webhooks")):
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD-SHELL"
        assert f'inspect ping -d "{node}@$(hostname)"' in test[1], name
    for name in ("worker-cpu", "worker-gpu"):
        assert services[name]["stop_grace_period"] == "15m"
    # The webhooks worker's stop waits VOXQ_STOP_GRACE_S for deliveries in hand, then hands the
    # rest back: compose must not SIGKILL it before that.
    assert services["webhooks"]["stop_grace_period"] == "1m"
    assert 60 >= Settings.load().jobs.stop_grace_s + 10


def test_audio_lives_in_one_named_volume_every_app_service_mounts(gpu):
    assert "audio" in gpu["volumes"]
    for name in ("api", "worker-cpu", "worker-gpu", "webhooks"):
        service = gpu["services"][name]
        assert "audio:/data" in service["volumes"], name
        assert service["environment"]["VOXQ_DATA_DIR"] == "/data"
        assert service["environment"]["REDIS_URL"] == "redis://:change-me@redis:6379/0"


def test_every_service_is_hardened_and_has_a_healthcheck(gpu, ha):
    services = {**gpu["services"], **ha["services"]}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), name
        assert service["read_only"] is True, name
        assert "/tmp" in service["tmpfs"], name
        assert service["restart"] == "unless-stopped", name
    for name in APP_SERVICES:
        assert services[name]["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in services[name]["security_opt"], name
        # The images run as uid 10001 (see the Dockerfile); compose does not override it.
        assert "user" not in services[name], name


def test_app_services_wait_for_a_healthy_redis(raw):
    for name in APP_SERVICES:
        assert raw["services"][name]["depends_on"]["redis"]["condition"] == "service_healthy", name


# --- .env.example ----------------------------------------------------------------------------


def test_env_example_lists_every_variable():
    listed = env_example_values()
    interpolated = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    passed_through = {name for service in yaml.safe_load(COMPOSE_FILE.read_text())["services"].values()
                      for name, value in (service.get("environment") or {}).items() if value is None}
    missing = (interpolated | passed_through | CONTRACT_VARIABLES) - set(listed)
    assert not missing, f".env.example does not list {sorted(missing)}"


def test_env_example_holds_placeholders_only():
    listed = env_example_values()
    assert listed["REDIS_PASSWORD"] == "change-me"
    assert listed["VOXQ_API_KEYS"] == "mytenant:change-me"
    assert listed["FLOWER_BASIC_AUTH"] == "admin:change-me"
    assert "change-me" not in json.dumps(yaml.safe_load(COMPOSE_FILE.read_text()))


# --- the ha profile's Redis set, on real processes -------------------------------------------


@pytest.mark.slow
def test_the_ha_profiles_scripts_make_a_sentinel_set_that_fails_over(ha, tmp_path):
    """The exact scripts of redis, redis-replica and sentinel-1..3, run as processes here (no
    engine): service names become 127.0.0.1 and each its own port, the volumes folders. The
    sentinels agree on the master and its replica; SIGKILL the master and they promote the
    replica, where voxq's store (through the sentinels, as the app services are configured)
    finds a job written before; the old master, started again, rejoins as a replica (it logs in
    to the new master: masterauth)."""
    import os
    import shutil
    import signal
    import time

    redis = pytest.importorskip("redis")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (`make install` installs it)")
    from shared.jobs import JobRequest
    from shared.store import Store, Unavailable
    from tests.support import free_port, wait_until

    services = ha["services"]
    ports = {"redis": free_port(), "redis-replica": free_port(),
             **{f"sentinel-{n}": free_port() for n in (1, 2, 3)}}
    processes: dict[str, subprocess.Popen] = {}

    def start(name: str) -> None:
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        script = services[name]["command"][2].replace("/tmp/", f"{folder}/").replace("/data/", f"{folder}/")
        script = script.replace("'port 26379'", f"'port {ports[name]}'")
        script = script.replace("monitor voxq redis 6379", f"monitor voxq 127.0.0.1 {ports['redis']}")
        script = script.replace("replicaof redis 6379", f"replicaof 127.0.0.1 {ports['redis']}")
        script = re.sub(r"replica-announce-ip [a-z-]+", "replica-announce-ip 127.0.0.1", script)
        if name.startswith("redis"):
            script += f" --port {ports[name]} --bind 127.0.0.1"
        # The sentinels as fast as the repository's tests run them; the rest as compose gives it.
        env = dict(services[name]["environment"], PATH=os.environ["PATH"], SENTINEL_NAME="127.0.0.1",
                   DOWN_AFTER_MS="1000", FAILOVER_TIMEOUT_MS="3000")
        processes[name] = subprocess.Popen(["sh", "-c", script], cwd=folder, env=env,
                                           stdout=open(folder / "out.log", "ab"), stderr=subprocess.STDOUT)

    def node(name: str):
        return redis.Redis(port=ports[name], password="change-me", socket_timeout=1, decode_responses=True)

    def master_seen() -> str | None:
        """The master's port as every sentinel gives it, once they agree."""
        try:
            seen = {str(node(f"sentinel-{n}").sentinel_get_master_addr_by_name("voxq")[1]) for n in (1, 2, 3)}
        except (redis.RedisError, TypeError):
            return None
        return seen.pop() if len(seen) == 1 else None

    try:
        start("redis")
        wait_until(lambda: _answers(node("redis")), 20, 0.05, "the master")
        for name in ("redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"):
            start(name)
        wait_until(lambda: node("redis").info("replication")["connected_slaves"] == 1, 20, 0.1, "the replica")
        wait_until(lambda: master_seen() == str(ports["redis"])
                   and len(node("sentinel-1").sentinel_sentinels("voxq")) == 2
                   and len(node("sentinel-1").sentinel_slaves("voxq")) == 1, 30, 0.2,
                   "three sentinels that know the master, its replica and each other")

        environment = services["api"]["environment"]
        url = environment["REDIS_URL"]
        for n in (1, 2, 3):
            url = url.replace(f"sentinel-{n}:26379", f"127.0.0.1:{ports[f'sentinel-{n}']}")
        settings = Settings.load(redis_url=url, redis_sentinel_master=env_example_values()["VOXQ_REDIS_SENTINEL_MASTER"],
                                 redis_sentinel_password="change-me")
        store = Store.open(settings.redis, result_ttl_s=60)
        record = store.jobs.create(JobRequest(text="你好。"), "tenant")
        wait_until(lambda: _confirmed(store), 10, 0.1, "the job on the replica")

        processes.pop("redis").send_signal(signal.SIGKILL)
        wait_until(lambda: master_seen() == str(ports["redis-replica"]), 30, 0.1, "the replica promoted")

        def found():
            try:
                return store.jobs.get(record.id)
            except Unavailable:
                return None

        assert wait_until(found, 20, 0.1, "the store on the new master").id == record.id
        time.sleep(0.5)  # past the kill: the old master restarts, as compose's restart policy does
        start("redis")
        wait_until(lambda: _linked(node("redis")), 30, 0.2, "the old master a replica of the new one")
    finally:
        for process in processes.values():
            process.kill()
            process.wait(10)


def _answers(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


def _confirmed(store) -> bool:
    try:
        return store.replicated()
    except Exception:  # noqa: BLE001 - the replica still syncing
        return False


def _linked(client) -> bool:
    try:
        info = client.info("replication")
    except Exception:  # noqa: BLE001 - starting
        return False
    return info["role"] == "slave" and info.get("master_link_status") == "up"
