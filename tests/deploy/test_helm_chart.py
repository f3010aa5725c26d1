"""The Helm chart: lint, render, validate against the Kubernetes schema, assert on the objects."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

helm = pytest.importorskip("helm_python")
yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "deploy" / "helm" / "voxq"
RELEASE = "rel"
NAMESPACE = "voxq"
# The Kubernetes release the chart is validated against; Chart.yaml's kubeVersion starts lower.
KUBE_VERSION = "1.33.0"

# The value sets the issue names, plus the variants each feature needs.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "gpu": {"workers": {"gpu": {"enabled": True}}},
    "external-redis-url": {
        "redis": {"enabled": False},
        "externalRedis": {"url": "rediss://:s3cretRedisPw@redis.example.com:6380/2"},
    },
    "external-redis-secret": {
        "redis": {"enabled": False},
        "externalRedis": {"existingSecret": "my-redis"},
        "keda": {"enabled": True, "redis": {"address": "redis.example.com:6379"}},
    },
    # deploy/helm/examples/external-sentinel.yaml, with the sentinels' own password too.
    "external-sentinel": {
        "redis": {"sentinel": {
            "enabled": True, "masterName": "mymaster", "existingSecret": "voxq-redis",
            "sentinelPasswordKey": "sentinel-password",
            "hosts": [f"redis-node-{n}.redis-headless.data.svc.cluster.local:26379" for n in range(3)]}},
        "networkPolicy": {"enabled": True},
    },
    "ingress-keda-servicemonitor": {
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "tls": [{"hosts": ["voxq.example.com"], "secretName": "voxq-tls"}],
        },
        "keda": {"enabled": True},
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "grafanaDashboard": {"enabled": True},
        "workers": {"gpu": {"enabled": True}},
    },
    "everything": {
        "auth": {
            "apiKeys": ["acme:" + "a" * 64],
            "keysFile": {"content": '[[keys]]\ntenant = "beta"\nsha256 = "' + "b" * 64 + '"\n'},
        },
        "workers": {
            "gpu": {"enabled": True},
            "extraPools": [{"name": "batch", "queues": ["batch"], "replicas": 3}],
        },
        "webhooks": {"secretsFile": {"content": 'acme = "whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"\n'}},
        "flower": {"auth": {"password": "flowerPw123"}},
        "redis": {"auth": {"password": "redisPw456"}},
        "networkPolicy": {"enabled": True},
        "persistence": {"existingClaim": "shared-audio"},
        "api": {"autoscaling": {"enabled": False}},
        "config": {"webhookAllowNetworks": ["10.20.0.0/16"]},
    },
}


def render(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Render the chart as `helm template` would, through Helm's Go SDK."""
    with helm.Chart.load(CHART_DIR) as chart:
        return chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)


def objects(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders with these values."""
    found = []
    for path, text in render(values).items():
        if path.endswith("NOTES.txt"):
            continue
        found.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return found


def by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def pod_specs(objs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(object, pod spec) for every workload and bare Pod."""
    for obj in objs:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            yield obj, obj["spec"]["template"]["spec"]
        elif obj["kind"] == "Pod":
            yield obj, obj["spec"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec.get("initContainers", []) + spec["containers"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


@pytest.fixture(params=sorted(VALUE_SETS), ids=sorted(VALUE_SETS))
def value_set(request) -> tuple[str, dict[str, Any]]:
    return request.param, VALUE_SETS[request.param]


FULLNAME = f"{RELEASE}-voxq"
# Kinds that come from operators' CRDs; kubernetes-validate ships only the built-in schemas.
CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule"}
SCAFFOLD_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
}


def workloads(objs):
    return {o["metadata"]["name"]: o for o in objs if o["kind"] in ("Deployment", "StatefulSet")}


def main_container(workload):
    return workload["spec"]["template"]["spec"]["containers"][0]


# --- lint and schema -------------------------------------------------------------------------


def test_lint_is_clean(value_set):
    name, values = value_set
    report = helm.lint(CHART_DIR, values, strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == [], report
    # Severity 1 is information ("icon is recommended"); warnings (2) and errors (3) fail.
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


def test_every_object_is_valid_kubernetes(value_set):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    name, values = value_set
    seen_crds = set()
    for obj in objects(values):
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            assert obj["kind"] in CRD_KINDS, f"{obj['kind']} has no schema in Kubernetes {KUBE_VERSION}"
            seen_crds.add(obj["kind"])
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']} at "
                        f"{'/'.join(map(str, error.path))}: {error.message}")
    if values.get("keda", {}).get("enabled"):
        assert {"ScaledObject", "TriggerAuthentication"} <= seen_crds


def test_defaults_pass_the_values_schema(value_set):
    with helm.Chart.load(CHART_DIR) as chart:
        chart.validate_schema(value_set[1])


BAD_VALUES = {
    "unknown pool type": {"workers": {"cpu": {"pool": "forkserver"}}},
    "gpu switch not a bool": {"workers": {"gpu": {"enabled": "yes"}}},
    "misspelt pool key": {"workers": {"cpu": {"replica": 3}}},
    "no queues": {"workers": {"cpu": {"queues": []}}},
    "zero concurrency": {"workers": {"cpu": {"concurrency": 0}}},
    "unknown device": {"workers": {"gpu": {"device": "rocm"}}},
    "extra pool without a name": {"workers": {"extraPools": [{"queues": ["batch"]}]}},
    "extra pool name not a DNS label": {"workers": {"extraPools": [{"name": "Big_Pool"}]}},
    "plaintext key instead of a hash": {"auth": {"apiKeys": ["acme:my-secret-key"]}},
    "key entry without a tenant": {"auth": {"apiKeys": ["a" * 64]}},
    "storage not shared": {"persistence": {"accessModes": ["ReadWriteOnce"]}},
    "no redis at all": {"redis": {"enabled": False}},
    "sentinel without hosts": {"redis": {"sentinel": {"enabled": True, "masterName": "m"}}},
    "sentinel without a master name": {"redis": {"sentinel": {"enabled": True, "hosts": ["s1:26379"]}}},
    "sentinel host without a port": {"redis": {"sentinel": {"enabled": True, "masterName": "m",
                                                            "hosts": ["sentinel-0"]}}},
    "redis url of another scheme": {"redis": {"enabled": False},
                                    "externalRedis": {"url": "http://redis:6379"}},
    "negative replicas": {"api": {"replicas": -1}},
    "probe with a typo": {"api": {"probes": {"liveness": {"periodSecond": 5}}}},
    "flower user with a colon": {"flower": {"auth": {"username": "a:b"}}},
    "unknown top-level key": {"wokers": {}},
    "bad log level": {"config": {"logLevel": "LOUD"}},
}


@pytest.mark.parametrize("values", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_values_schema_rejects_bad_values(values):
    with helm.Chart.load(CHART_DIR) as chart:
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema(values)
    # `helm install` refuses them the same way.
    with pytest.raises(helm.HelmError):
        render(values)


def test_component_blocks_share_the_scaffold_keys():
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    blocks = {
        "api": values["api"],
        "workers.cpu": values["workers"]["cpu"],
        "workers.gpu": values["workers"]["gpu"],
        "webhooks": values["webhooks"],
        "flower": values["flower"],
    }
    for name, block in blocks.items():
        missing = {"replicas", "image", "resources", "probes", "nodeSelector", "tolerations",
                   "affinity"} - set(block)
        assert not missing, f"{name} lacks {missing}"
    # Redis is a single primary by design: every key but replicas.
    assert {"resources", "probes", "nodeSelector", "tolerations", "affinity"} <= set(values["redis"])


# --- labels ----------------------------------------------------------------------------------


def test_labels_follow_the_scaffold(value_set):
    objs = objects(value_set[1])
    selectors = {}
    for obj in objs:
        labels = obj["metadata"].get("labels", {})
        assert SCAFFOLD_LABELS <= set(labels), f"{obj['kind']}/{obj['metadata']['name']}: {labels}"
        assert labels["app.kubernetes.io/name"] == "voxq"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
    for name, workload in workloads(objs).items():
        selector = workload["spec"]["selector"]["matchLabels"]
        assert set(selector) == {"app.kubernetes.io/name", "app.kubernetes.io/instance",
                                 "app.kubernetes.io/component"}, name
        pod_labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items(), name
        assert SCAFFOLD_LABELS <= set(pod_labels), name
        selectors[name] = selector
    # No two workloads select each other's pods.
    as_tuples = [tuple(sorted(s.items())) for s in selectors.values()]
    assert len(set(as_tuples)) == len(as_tuples)
    # Every Service selects the pods of exactly one workload.
    for name, service in by_kind(objs, "Service").items():
        chosen = [w for w, s in selectors.items() if s == service["spec"]["selector"]]
        assert len(chosen) == 1, f"Service {name} selects {chosen}"


# --- the API ---------------------------------------------------------------------------------


def test_api_runs_gunicorn_with_probes_and_hpa():
    objs = objects()
    api = workloads(objs)[f"{FULLNAME}-api"]
    container = main_container(api)
    assert container["command"] == [
        "gunicorn", "-c", "python:api.gunicorn_conf", "--bind", "0.0.0.0:5000", "--workers", "2", "--threads", "4",
        "--worker-tmp-dir", "/tmp", "api.app:create_app()",
    ]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    hpa = by_kind(objs, "HorizontalPodAutoscaler")[f"{FULLNAME}-api"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": f"{FULLNAME}-api"}
    # The HPA owns the replica count; a fixed one would fight it on every upgrade.
    assert "replicas" not in api["spec"]
    service = by_kind(objs, "Service")[f"{FULLNAME}-api"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert "Ingress" not in {o["kind"] for o in objs}


def test_ingress_routes_to_the_api():
    objs = objects(VALUE_SETS["ingress-keda-servicemonitor"])
    ingress = by_kind(objs, "Ingress")[FULLNAME]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": f"{FULLNAME}-api", "port": {"name": "http"}}
    assert ingress["spec"]["tls"] == [{"hosts": ["voxq.example.com"], "secretName": "voxq-tls"}]


def test_service_monitor_scrapes_api_metrics():
    objs = objects(VALUE_SETS["ingress-keda-servicemonitor"])
    monitor = by_kind(objs, "ServiceMonitor")[f"{FULLNAME}-api"]
    api_service = by_kind(objs, "Service")[f"{FULLNAME}-api"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= api_service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}]


def test_alerts_and_dashboard_ship_the_files_compose_users_get():
    objs = objects(VALUE_SETS["ingress-keda-servicemonitor"])
    rule = by_kind(objs, "PrometheusRule")[f"{FULLNAME}-monitoring"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    plain = yaml.safe_load((REPO / "deploy/prometheus/alerts.yaml").read_text())
    assert rule["spec"] == plain
    dashboard = by_kind(objs, "ConfigMap")[f"{FULLNAME}-monitoring-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["voxq.json"]) == json.loads(
        (REPO / "deploy/grafana/voxq.json").read_text())
    # Off by default: a cluster without the Prometheus Operator has no PrometheusRule kind.
    defaults = objects()
    assert not by_kind(defaults, "PrometheusRule")
    assert f"{FULLNAME}-monitoring-dashboard" not in by_kind(defaults, "ConfigMap")


# --- worker pools ----------------------------------------------------------------------------


def celery_node(container):
    command = container["command"]
    return command[command.index("-n") + 1].split("@")[0]


def assert_pings_itself(container, node):
    for probe in ("startupProbe", "livenessProbe"):
        script = container[probe]["exec"]["command"]
        assert script[:2] == ["sh", "-c"]
        assert script[2] == f'celery -A worker.app inspect ping -d "{node}@$HOSTNAME" --timeout 10'
        # An exec probe that times out before Celery's own 10 s reply window fails too early.
        assert container[probe]["timeoutSeconds"] > 10


def test_default_has_one_cpu_pool_and_no_gpu():
    deployments = by_kind(objects(), "Deployment")
    assert f"{FULLNAME}-worker-cpu" in deployments
    assert f"{FULLNAME}-worker-gpu" not in deployments
    for deployment in deployments.values():
        for container in containers(deployment["spec"]["template"]["spec"]):
            assert "nvidia.com/gpu" not in json.dumps(container.get("resources", {}))


def test_cpu_pool_matches_the_worker_contract():
    worker = by_kind(objects(), "Deployment")[f"{FULLNAME}-worker-cpu"]
    spec = worker["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["command"] == [
        "celery", "-A", "worker.app", "worker", "--pool", "prefork",
        "--concurrency", "$(VOXQ_WORKER_CONCURRENCY)", "-Q", "interactive,batch",
        "--loglevel", "INFO", "-n", "cpu@%h",
    ]
    env = env_of(container)
    assert env["VOXQ_ENGINE"]["value"] == "fastspeech2-litert"
    assert env["VOXQ_DEVICE"]["value"] == "cpu"
    assert env["VOXQ_WORKER_CONCURRENCY"]["value"] == "2"
    assert env["VOXQ_ENGINE_THREADS"]["value"] == "1"
    assert_pings_itself(container, "cpu")
    startup = container["startupProbe"]
    # The startup window covers loading the model: at least five minutes.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    # Warm shutdown finishes the jobs in hand: the grace period is long enough for a job.
    assert spec["terminationGracePeriodSeconds"] >= 600
    assert container["resources"]["requests"]["cpu"] == "2"


def test_gpu_pool_requests_a_gpu_and_tolerates_gpu_nodes():
    objs = objects(VALUE_SETS["gpu"])
    gpu = by_kind(objs, "Deployment")[f"{FULLNAME}-worker-gpu"]
    spec = gpu["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert container["command"] == [
        "celery", "-A", "worker.app", "worker", "--pool", "threads", "--concurrency", "$(VOXQ_WORKER_CONCURRENCY)",
        "-Q", "gpu-interactive,gpu-batch,interactive,batch", "--loglevel", "INFO", "-n", "gpu@%h",
    ]
    assert env_of(container)["VOXQ_WORKER_CONCURRENCY"]["value"] == "16"
    env = env_of(container)
    assert env["VOXQ_ENGINE"]["value"] == "fastspeech2-torch"
    assert env["VOXQ_DEVICE"]["value"] == "cuda"
    assert container["image"] == "voxq/worker-gpu:0.1.0"
    assert_pings_itself(container, "gpu")
    liveness = container["livenessProbe"]
    # A ping can wait behind the GPU under heavy batching: liveness tolerates long silence.
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 900
    assert spec["terminationGracePeriodSeconds"] >= 600
    # No surge: a second pod would wait for a GPU that is not there.
    assert gpu["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    # The CPU pool is still there beside it.
    assert f"{FULLNAME}-worker-cpu" in by_kind(objs, "Deployment")
    assert f"{FULLNAME}-worker-gpu" in by_kind(objs, "PodDisruptionBudget")


def test_extra_pools_get_their_own_deployment_and_inherit_cpu_settings():
    objs = objects(VALUE_SETS["everything"])
    deployments = by_kind(objs, "Deployment")
    batch = deployments[f"{FULLNAME}-worker-batch"]
    container = main_container(batch)
    assert batch["spec"]["replicas"] == 3
    assert container["command"][container["command"].index("-Q") + 1] == "batch"
    assert celery_node(container) == "batch"
    assert_pings_itself(container, "batch")
    cpu = main_container(deployments[f"{FULLNAME}-worker-cpu"])
    assert container["image"] == cpu["image"]
    assert container["resources"] == cpu["resources"]
    assert batch["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 900
    assert f"{FULLNAME}-worker-batch" in by_kind(objs, "PodDisruptionBudget")


def test_extra_pool_cannot_take_a_builtin_name():
    with pytest.raises(helm.HelmRenderError, match="taken"):
        render({"workers": {"extraPools": [{"name": "gpu"}]}})


def test_webhook_worker_has_its_own_queue():
    webhooks = by_kind(objects(), "Deployment")[f"{FULLNAME}-webhooks"]
    container = main_container(webhooks)
    assert container["command"] == [
        "celery", "-A", "worker.app", "worker", "--pool", "threads", "--concurrency", "8",
        "-Q", "webhooks", "--loglevel", "INFO", "-n", "webhooks@%h",
    ]
    assert_pings_itself(container, "webhooks")
    # Its stop waits VOXQ_STOP_GRACE_S for deliveries in hand: the kubelet must not kill it sooner.
    from shared.config import Settings

    assert webhooks["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= Settings.load().jobs.stop_grace_s + 10


def test_every_container_has_probes_and_resources(value_set):
    for obj, spec in pod_specs(objects(value_set[1])):
        if obj["kind"] == "Pod":
            continue  # the helm test Pod runs once and exits
        for container in containers(spec):
            where = f"{obj['metadata']['name']}/{container['name']}"
            assert "livenessProbe" in container, where
            component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
            if component in ("api", "flower", "redis"):
                assert "readinessProbe" in container, where
            if component.startswith("worker-") or component == "webhooks":
                assert "startupProbe" in container, where
            resources = container["resources"]
            assert resources["requests"]["cpu"] and resources["requests"]["memory"], where
            assert resources["limits"]["memory"], where


def test_keda_scales_each_pool_on_its_redis_queues():
    objs = objects(VALUE_SETS["ingress-keda-servicemonitor"])
    scaled = by_kind(objs, "ScaledObject")
    deployments = by_kind(objs, "Deployment")
    auth = by_kind(objs, "TriggerAuthentication")[f"{FULLNAME}-redis"]
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": f"{FULLNAME}-redis", "key": "redis-password"}]
    assert f"{FULLNAME}-redis" in by_kind(objs, "Secret")
    expected = {"cpu": ["interactive", "batch"], "gpu": ["gpu-interactive", "gpu-batch"]}
    for pool, queues in expected.items():
        name = f"{FULLNAME}-worker-{pool}"
        obj = scaled[name]
        assert obj["spec"]["scaleTargetRef"] == {"name": name}
        # KEDA owns the replica count of the pools it scales.
        assert "replicas" not in deployments[name]["spec"]
        triggers = obj["spec"]["triggers"]
        assert [t["metadata"]["listName"] for t in triggers] == queues
        for trigger in triggers:
            assert trigger["type"] == "redis"
            assert trigger["metadata"]["address"] == f"{FULLNAME}-redis:6379"
            assert trigger["metadata"]["enableTLS"] == "false"
            assert trigger["authenticationRef"] == {"name": f"{FULLNAME}-redis"}
            assert all(isinstance(v, str) for v in trigger["metadata"].values())


def test_keda_with_external_redis_url_takes_host_tls_and_database_from_it():
    values = {**VALUE_SETS["external-redis-url"], "keda": {"enabled": True}}
    objs = objects(values)
    trigger = by_kind(objs, "ScaledObject")[f"{FULLNAME}-worker-cpu"]["spec"]["triggers"][0]
    assert trigger["metadata"]["address"] == "redis.example.com:6380"
    assert trigger["metadata"]["enableTLS"] == "true"
    assert trigger["metadata"]["databaseIndex"] == "2"
    auth = by_kind(objs, "TriggerAuthentication")[f"{FULLNAME}-redis"]
    ref = auth["spec"]["secretTargetRef"][0]
    secret = by_kind(objs, "Secret")[ref["name"]]
    assert secret_data(secret)[ref["key"]] == "s3cretRedisPw"


# --- Redis and storage -----------------------------------------------------------------------


def test_bundled_redis_has_aof_noeviction_password_and_a_volume():
    objs = objects()
    redis = by_kind(objs, "StatefulSet")[f"{FULLNAME}-redis"]
    container = main_container(redis)
    script = " ".join(container["command"])
    for setting in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction",
                    "requirepass"):
        assert setting in script, setting
    env = env_of(container)
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{FULLNAME}-redis", "key": "redis-password"}
    password = secret_data(by_kind(objs, "Secret")[f"{FULLNAME}-redis"])["redis-password"]
    assert len(password) >= 32
    assert password not in json.dumps(redis)
    claim = redis["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "data"
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    assert redis["spec"]["replicas"] == 1
    assert redis["spec"]["serviceName"] in by_kind(objs, "Service")


def test_external_redis_url_lives_in_a_secret():
    objs = objects(VALUE_SETS["external-redis-url"])
    assert "StatefulSet" not in {o["kind"] for o in objs}
    secret = by_kind(objs, "Secret")[f"{FULLNAME}-external-redis"]
    assert secret_data(secret)["redis-url"] == VALUE_SETS["external-redis-url"]["externalRedis"]["url"]
    for obj, spec in pod_specs(objs):
        for container in containers(spec):
            redis_url = env_of(container).get("REDIS_URL")
            if redis_url:
                assert redis_url["valueFrom"]["secretKeyRef"] == {
                    "name": f"{FULLNAME}-external-redis", "key": "redis-url"}


def test_external_redis_existing_secret_is_only_referenced():
    objs = objects(VALUE_SETS["external-redis-secret"])
    assert "my-redis" not in by_kind(objs, "Secret")
    assert not any("redis" in name for name in by_kind(objs, "Secret"))
    api = main_container(by_kind(objs, "Deployment")[f"{FULLNAME}-api"])
    assert env_of(api)["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "my-redis",
                                                                     "key": "redis-url"}
    auth = by_kind(objs, "TriggerAuthentication")[f"{FULLNAME}-redis"]
    assert auth["spec"]["secretTargetRef"][0] == {"parameter": "password", "name": "my-redis",
                                                  "key": "redis-password"}


SENTINEL_URL = ";".join(
    [f"sentinel://:$(REDIS_PASSWORD)@redis-node-0.redis-headless.data.svc.cluster.local:26379/0"]
    + [f"sentinel://redis-node-{n}.redis-headless.data.svc.cluster.local:26379/0" for n in (1, 2)])


def test_an_external_sentinel_replaces_the_bundled_redis_in_every_pod():
    objs = objects(VALUE_SETS["external-sentinel"])
    # The single Redis is not deployed: no StatefulSet, Service, Secret or NetworkPolicy of it.
    assert "StatefulSet" not in {o["kind"] for o in objs}
    assert not [name for kind in ("Service", "Secret", "NetworkPolicy") for name in by_kind(objs, kind)
                if name.startswith(f"{FULLNAME}-redis") or name.endswith("external-redis")]
    deployments = by_kind(objs, "Deployment")
    for name in (f"{FULLNAME}-api", f"{FULLNAME}-worker-cpu", f"{FULLNAME}-webhooks", f"{FULLNAME}-flower"):
        env = env_of(main_container(deployments[name]))
        assert env["REDIS_URL"]["value"] == SENTINEL_URL, name
        assert env["VOXQ_REDIS_SENTINEL_MASTER"]["value"] == "mymaster", name
        assert env["VOXQ_REDIS_WAIT_REPLICAS"]["value"] == "1", name
        assert env["VOXQ_REDIS_WAIT_TIMEOUT_MS"]["value"] == "1000", name
        assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "voxq-redis", "key": "redis-password"}
        assert env["VOXQ_REDIS_SENTINEL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "voxq-redis", "key": "sentinel-password"}, name
        # Kubernetes splices the password in only from a variable defined before the URL.
        names = [e["name"] for e in main_container(deployments[name])["env"]]
        assert names.index("REDIS_PASSWORD") < names.index("REDIS_URL"), name
    # What the pods get is what voxq's settings accept: the sentinels in order, one replica waited for.
    from shared.config import Settings

    target = Settings.load(redis_url=SENTINEL_URL.replace("$(REDIS_PASSWORD)", "pw"),
                           redis_sentinel_master="mymaster").redis
    assert target.sentinels == [(f"redis-node-{n}.redis-headless.data.svc.cluster.local", 26379) for n in range(3)]
    assert target.password == "pw" and target.replicas_to_wait == 1


def test_the_example_sentinel_values_render_and_keep_the_default_single_redis_otherwise():
    example = yaml.safe_load((REPO / "deploy" / "helm" / "examples" / "external-sentinel.yaml").read_text())
    with helm.Chart.load(CHART_DIR) as chart:
        chart.validate_schema(example)
    api = main_container(by_kind(objects(example), "Deployment")[f"{FULLNAME}-api"])
    assert env_of(api)["REDIS_URL"]["value"] == SENTINEL_URL
    assert "VOXQ_REDIS_SENTINEL_PASSWORD" not in env_of(api)  # the example's sentinels have none
    # The default: the bundled Redis, a plain URL, no Sentinel settings.
    default_api = main_container(by_kind(objects(), "Deployment")[f"{FULLNAME}-api"])
    assert env_of(default_api)["REDIS_URL"]["value"] == f"redis://:$(REDIS_PASSWORD)@{FULLNAME}-redis:6379/0"
    assert not {"VOXQ_REDIS_SENTINEL_MASTER", "VOXQ_REDIS_WAIT_REPLICAS"} & set(env_of(default_api))


@pytest.mark.parametrize("values,message", [
    ({"redis": {"sentinel": {"enabled": True, "hosts": ["s:26379"], "masterName": "m"}}, "keda": {"enabled": True}},
     "keda.enabled with redis.sentinel.enabled is not supported"),
    ({"redis": {"sentinel": {"enabled": True, "hosts": ["s:26379"], "masterName": "m",
                             "sentinelPasswordKey": "k"}}},
     "redis.sentinel.sentinelPasswordKey needs redis.sentinel.existingSecret"),
])
def test_a_sentinel_the_chart_cannot_serve_fails_the_render_in_one_line(values, message):
    with pytest.raises(Exception, match=message):
        render(values)


def test_a_sentinel_without_a_password_has_none_in_its_url():
    values = {"redis": {"sentinel": {"enabled": True, "hosts": ["s1:26379", "s2:26379"], "masterName": "m", "db": 2}}}
    api = env_of(main_container(by_kind(objects(values), "Deployment")[f"{FULLNAME}-api"]))
    assert api["REDIS_URL"]["value"] == "sentinel://s1:26379/2;sentinel://s2:26379/2"
    assert "REDIS_PASSWORD" not in api


def test_audio_volume_is_shared_read_write_many():
    objs = objects()
    claim = by_kind(objs, "PersistentVolumeClaim")[f"{FULLNAME}-data"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for name in ("api", "worker-cpu", "webhooks"):
        spec = by_kind(objs, "Deployment")[f"{FULLNAME}-{name}"]["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] == f"{FULLNAME}-data"
        assert {"name": "data", "mountPath": "/data"} in spec["containers"][0]["volumeMounts"]
    assert by_kind(objs, "ConfigMap")[f"{FULLNAME}-config"]["data"]["VOXQ_DATA_DIR"] == "/data"


def test_existing_claim_is_used_and_not_created():
    objs = objects(VALUE_SETS["everything"])
    assert "PersistentVolumeClaim" not in {o["kind"] for o in objs}
    for name in ("api", "worker-cpu", "worker-gpu", "worker-batch", "webhooks"):
        spec = by_kind(objs, "Deployment")[f"{FULLNAME}-{name}"]["spec"]["template"]["spec"]
        claim = {v["name"]: v for v in spec["volumes"]}["data"]["persistentVolumeClaim"]
        assert claim["claimName"] == "shared-audio"


# --- secrets and security --------------------------------------------------------------------

SECRET_ENV = {"REDIS_PASSWORD", "VOXQ_API_KEYS", "VOXQ_API_KEY", "FLOWER_BASIC_AUTH",
              "REDISCLI_AUTH", "VOXQ_REDIS_SENTINEL_PASSWORD"}


def test_secrets_reach_pods_only_through_secret_key_refs(value_set):
    objs = objects(value_set[1])
    secrets = by_kind(objs, "Secret")
    secret_values = {value for s in secrets.values() for value in secret_data(s).values()
                     if len(value) >= 6}
    assert secret_values, "the chart renders no Secret to check against"
    for obj, spec in pod_specs(objs):
        for container in containers(spec):
            for env in container.get("env", []):
                where = f"{obj['metadata']['name']}/{container['name']}/{env['name']}"
                if env["name"] in SECRET_ENV:
                    assert "secretKeyRef" in env.get("valueFrom", {}), where
                if env["name"] == "REDIS_URL" and "value" in env:
                    # The bundled Redis: Kubernetes splices the password in from its Secret.
                    assert "$(REDIS_PASSWORD)" in env["value"], where
                for value in secret_values:
                    assert value not in env.get("value", ""), f"{where} inlines a secret"
            text = json.dumps(container)
            for value in secret_values:
                assert value not in text, f"{obj['metadata']['name']}/{container['name']}"
    # Every secretKeyRef names a Secret the chart makes or one the values say exists.
    existing = {"my-redis", "shared-audio", "voxq-redis"}
    for obj, spec in pod_specs(objs):
        for container in containers(spec):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] not in existing:
                    assert ref["key"] in secret_data(secrets[ref["name"]]), ref


def test_api_keys_and_secret_files_come_from_secrets():
    objs = objects(VALUE_SETS["everything"])
    secrets = by_kind(objs, "Secret")
    api = main_container(by_kind(objs, "Deployment")[f"{FULLNAME}-api"])
    assert env_of(api)["VOXQ_API_KEYS"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{FULLNAME}-api-keys", "key": "api-keys"}
    entries = secret_data(secrets[f"{FULLNAME}-api-keys"])["api-keys"].split(",")
    assert entries[0] == "acme:" + "a" * 64
    assert re.fullmatch(r"helm-test:[0-9a-f]{64}", entries[1])
    files = {
        # env variable: (volume, Secret, key in the Secret, what the file holds)
        "VOXQ_API_KEYS_FILE": ("api-keys-file", f"{FULLNAME}-api-keys-file", "api-keys.toml",
                               "[[keys]]"),
        "VOXQ_WEBHOOK_SECRETS_FILE": ("webhook-secrets", f"{FULLNAME}-webhook-secrets",
                                      "webhook-secrets.toml", "whsec_"),
    }
    for name in ("api", "webhooks"):
        deployment = by_kind(objs, "Deployment")[f"{FULLNAME}-{name}"]
        container = main_container(deployment)
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        for variable, (volume, secret, key, content) in files.items():
            path = env_of(container)[variable]["value"]
            mount = next(m for m in container["volumeMounts"] if m["name"] == volume)
            assert mount["readOnly"] is True
            assert volumes[volume]["secret"]["secretName"] == secret
            (item,) = volumes[volume]["secret"]["items"]
            assert item["key"] == key
            assert path == f"{mount['mountPath']}/{item['path']}"
            assert content in secret_data(secrets[secret])[key]
    # Synthesis workers never see the keys file or the signing secrets.
    cpu = main_container(by_kind(objs, "Deployment")[f"{FULLNAME}-worker-cpu"])
    assert not set(files) & set(env_of(cpu))


def test_everything_runs_as_non_root_with_a_read_only_root(value_set):
    for obj, spec in pod_specs(objects(value_set[1])):
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, obj["metadata"]["name"]
        assert pod.get("runAsUser", 0) > 0, obj["metadata"]["name"]
        assert spec.get("automountServiceAccountToken") is False, obj["metadata"]["name"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in containers(spec):
            where = f"{obj['metadata']['name']}/{container['name']}"
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert security.get("runAsUser", pod["runAsUser"]) != 0, where
            assert security["readOnlyRootFilesystem"] is True, where
            # A read-only root still needs somewhere to write temporary files.
            tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
            assert "emptyDir" in volumes[tmp["name"]], where


def test_images_run_as_the_user_the_dockerfile_creates():
    dockerfile = (REPO / "Dockerfile").read_text()
    uid = re.search(r"useradd .*--uid (\d+)", dockerfile.replace("\\\n", " ")).group(1)
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    assert values["podSecurityContext"]["fsGroup"] == int(uid)


def test_flower_runs_only_with_basic_auth_from_a_secret():
    objs = objects(VALUE_SETS["everything"])
    flower = main_container(by_kind(objs, "Deployment")[f"{FULLNAME}-flower"])
    # Its app takes the broker settings from voxq's settings (a Sentinel's master name too).
    assert flower["command"] == ["celery", "-A", "shared.flower_app", "flower", "--port=5555", "--max_tasks=2000"]
    ref = env_of(flower)["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": f"{FULLNAME}-flower", "key": "basic-auth"}
    assert secret_data(by_kind(objs, "Secret")[ref["name"]])["basic-auth"] == "admin:flowerPw123"
    assert flower["livenessProbe"]["httpGet"]["path"] == "/healthcheck"
    # Without a password the chart makes one up; it is never empty.
    generated = secret_data(by_kind(objects(), "Secret")[f"{FULLNAME}-flower"])["basic-auth"]
    user, password = generated.split(":")
    assert user == "admin" and len(password) >= 32


def test_pod_disruption_budgets_cover_api_and_every_pool(value_set):
    objs = objects(value_set[1])
    budgets = by_kind(objs, "PodDisruptionBudget")
    for name, deployment in by_kind(objs, "Deployment").items():
        if name.endswith("-flower"):
            continue  # a single dashboard replica; a budget would only block drains
        budget = budgets[name]
        assert budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        assert budget["spec"]["maxUnavailable"] == 1


def test_network_policies_close_everything_but_the_api():
    objs = objects(VALUE_SETS["everything"])
    policies = by_kind(objs, "NetworkPolicy")
    for name in ("worker-cpu", "worker-gpu", "worker-batch", "webhooks"):
        policy = policies[f"{FULLNAME}-{name}"]
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        assert "ingress" not in policy["spec"]
    redis = policies[f"{FULLNAME}-redis"]
    assert redis["spec"]["ingress"][0]["from"] == [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "voxq", "app.kubernetes.io/instance": RELEASE}}}]
    api = policies[f"{FULLNAME}-api"]
    assert api["spec"]["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert "from" not in api["spec"]["ingress"][0]
    assert f"{FULLNAME}-flower" in policies
    assert "NetworkPolicy" not in {o["kind"] for o in objects()}


def test_notes_tell_how_to_reach_and_test_the_release():
    notes = render()["voxq/templates/NOTES.txt"]
    assert f"helm test {RELEASE} --namespace {NAMESPACE}" in notes
    assert f"svc/{FULLNAME}-api" in notes and f"svc/{FULLNAME}-flower" in notes
    assert "pool cpu: queues interactive,batch" in notes
    assert "pool gpu" in render(VALUE_SETS["gpu"])["voxq/templates/NOTES.txt"]


# --- the helm test hook ----------------------------------------------------------------------


def hook_pod(objs):
    pods = [o for o in objs if o["kind"] == "Pod"]
    assert len(pods) == 1
    return pods[0]


def test_helm_test_hook_submits_with_the_key_from_the_secret():
    objs = objects()
    pod = hook_pod(objs)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    container = pod["spec"]["containers"][0]
    api = main_container(by_kind(objs, "Deployment")[f"{FULLNAME}-api"])
    assert container["image"] == api["image"]
    assert container["command"][:2] == ["python", "-c"]
    env = env_of(container)
    assert env["VOXQ_URL"]["value"] == f"http://{FULLNAME}-api:80"
    ref = env["VOXQ_API_KEY"]["valueFrom"]["secretKeyRef"]
    secret = secret_data(by_kind(objs, "Secret")[ref["name"]])
    # The API accepts the test key: its digest is among the accepted entries.
    test_key = secret[ref["key"]]
    digest = hashlib.sha256(test_key.encode()).hexdigest()
    assert f"helm-test:{digest}" in secret["api-keys"].split(",")


class _StubAPI(BaseHTTPRequestHandler):
    """Answers like voxq's job API does, to exercise the hook's own logic on loopback."""

    key = "stub-key"
    final_status = "succeeded"
    polls = 0

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _reply(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self):
        if self.headers.get("Authorization") != f"Bearer {self.key}":
            self._reply(401, {"error": {"code": "unauthorized", "message": "bad key"}})
            return False
        return True

    def do_POST(self):
        if not self._authorized():
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path == "/v1/jobs" and body["text"]
        self._reply(202, {"id": "job-1", "status": "queued"})

    def do_GET(self):
        if not self._authorized():
            return
        if self.path == "/v1/jobs/job-1":
            type(self).polls += 1
            status = "running" if self.polls < 2 else self.final_status
            self._reply(200, {"id": "job-1", "status": status,
                              "error": {"code": "engine", "message": "boom"}})
        elif self.path == "/v1/jobs/job-1/audio":
            self._reply(200, b"RIFF" + bytes(4096), content_type="audio/wav")
        else:
            self._reply(404, {"error": {"code": "not_found", "message": self.path}})


@pytest.mark.parametrize("final_status, key, succeeds", [
    ("succeeded", "stub-key", True),
    ("failed", "stub-key", False),
    ("succeeded", "wrong-key", False),
])
def test_helm_test_script_polls_to_success_and_fails_otherwise(final_status, key, succeeds):
    container = hook_pod(objects())["spec"]["containers"][0]
    script = container["command"][2]
    handler = type("Handler", (_StubAPI,), {"final_status": final_status, "polls": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {k: v["value"] for k, v in env_of(container).items() if "value" in v}
        env.update(PATH=os.environ["PATH"], VOXQ_API_KEY=key, VOXQ_TEST_TIMEOUT_S="20",
                   VOXQ_URL=f"http://127.0.0.1:{server.server_port}")
        result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                                text=True, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    assert (result.returncode == 0) is succeeds, result.stdout + result.stderr
    if succeeds:
        assert "succeeded: job-1 4100 bytes of audio/wav" in result.stdout


# --- the chart's own commands, run for real --------------------------------------------------


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def k8s_expand(text, env):
    """Kubernetes' $(VAR) expansion in command and env values."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), text)


def container_env(container, objs, secrets, base):
    """The environment Kubernetes would give this container, with paths moved under tmp."""
    env = dict(base)
    configmaps = by_kind(objs, "ConfigMap")
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = k8s_expand(item["value"], env)
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
    return env


def wait_until(check, timeout, what, processes=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            assert process.poll() is None, f"{process.args[0]} exited while waiting for {what}"
        if check():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def probe(container, kind, env):
    command = container[kind]["exec"]["command"]
    return subprocess.run(command, env=env, capture_output=True, timeout=60).returncode == 0


@pytest.mark.slow
def test_chart_commands_serve_a_real_job(tmp_path):
    """Redis, a CPU worker and the API started with the exact commands, environment and probes
    the chart renders (ports and /data moved to this machine), then the `helm test` script."""
    redis_client = pytest.importorskip("redis")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (`make install` installs it)")
    objs = objects({"workers": {"cpu": {"concurrency": 1}}})
    secrets = {name: secret_data(s) for name, s in by_kind(objs, "Secret").items()}
    redis_port, api_port = free_port(), free_port()
    data = tmp_path / "data"
    data.mkdir()
    bin_dir = os.path.dirname(sys.executable)
    base = {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "HOSTNAME": socket.gethostname(),
            "PYTHONUNBUFFERED": "1"}

    def relocate(env):
        env = dict(env, HOME=str(tmp_path), VOXQ_DATA_DIR=str(data))
        if "REDIS_URL" in env:
            env["REDIS_URL"] = env["REDIS_URL"].replace(f"{FULLNAME}-redis:6379",
                                                        f"127.0.0.1:{redis_port}")
        return env

    processes = []

    def start(command, env, name):
        log = open(tmp_path / f"{name}.log", "wb")
        process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        processes.append(process)
        return process

    try:
        # Redis, as the StatefulSet runs it.
        redis_container = main_container(by_kind(objs, "StatefulSet")[f"{FULLNAME}-redis"])
        redis_env = container_env(redis_container, objs, secrets, base)
        script = redis_container["command"][2].replace("/tmp/", f"{tmp_path}/")
        script = script.replace("--dir /data", f"--dir {data.parent} --port {redis_port} "
                                               "--bind 127.0.0.1")
        start(["sh", "-c", script], redis_env, "redis")
        redis_probe = dict(redis_container["readinessProbe"])
        redis_probe["exec"] = {"command": [c.replace("-h 127.0.0.1", f"-h 127.0.0.1 -p {redis_port}")
                                           for c in redis_probe["exec"]["command"]]}
        wait_until(lambda: probe({"readinessProbe": redis_probe}, "readinessProbe", redis_env),
                   30, "Redis readiness", processes)
        password = secrets[f"{FULLNAME}-redis"]["redis-password"]
        client = redis_client.Redis(port=redis_port, password=password)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        with pytest.raises(redis_client.AuthenticationError):
            redis_client.Redis(port=redis_port).ping()

        # The CPU worker: the Deployment's command after Kubernetes' $(VAR) expansion.
        worker_container = main_container(by_kind(objs, "Deployment")[f"{FULLNAME}-worker-cpu"])
        worker_env = relocate(container_env(worker_container, objs, secrets, base))
        worker = start([k8s_expand(c, worker_env) for c in worker_container["command"]],
                       worker_env, "worker")
        # The startup probe (a Celery ping to this worker's node) passes once the model is loaded.
        wait_until(lambda: probe(worker_container, "startupProbe", worker_env), 240,
                   "the worker's startup probe", processes)
        assert probe(worker_container, "livenessProbe", worker_env)

        # The API, as its Deployment runs it.
        api_container = main_container(by_kind(objs, "Deployment")[f"{FULLNAME}-api"])
        api_env = relocate(container_env(api_container, objs, secrets, base))
        api_command = [c.replace("0.0.0.0:5000", f"127.0.0.1:{api_port}")
                       for c in api_container["command"]]
        start(api_command, api_env, "api")

        def http_ok(path):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{api_port}{path}", timeout=5) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(lambda: http_ok(api_container["startupProbe"]["httpGet"]["path"]), 60,
                   "the API's startup probe", processes)
        wait_until(lambda: http_ok(api_container["readinessProbe"]["httpGet"]["path"]), 60,
                   "the API's readiness probe", processes)

        # The `helm test` Pod's script, with the key from the chart's Secret.
        test_container = hook_pod(objs)["spec"]["containers"][0]
        test_env = container_env(test_container, objs, secrets, base)
        test_env["VOXQ_URL"] = f"http://127.0.0.1:{api_port}"
        result = subprocess.run([sys.executable, "-c", test_container["command"][2]],
                                env=test_env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "succeeded:" in result.stdout and "audio/wav" in result.stdout

        # SIGTERM is Celery's warm shutdown: the worker leaves well inside its grace period.
        grace = by_kind(objs, "Deployment")[f"{FULLNAME}-worker-cpu"]["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=min(grace, 60)) == 0
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
