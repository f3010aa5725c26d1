"""Webhooks for real: a synthesis worker, a webhooks worker, and HTTP receivers on loopback.

Signatures are checked with the `standardwebhooks` package, the reference verifier, not our code.
The workers allow only 127.0.0.1/32 and the API 127.0.0.0/8, so a URL the API accepted can still
be refused at delivery, which is the point of checking twice.
"""
from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import time
from types import SimpleNamespace

import pytest
import redis
from standardwebhooks import Webhook

from shared import callback_policy as callbacks
from shared import keys
from shared.config import WebhookSettings
from shared.store import keyspace
from shared.store.workers import WorkerRegistry
from tests.support import Worker, free_port, quiet, wait_for, wait_until
from tests.receiver import Receiver

SCHEDULE = "0,1,1,1,1,1,1,1"  # eight attempts, a second apart: the real one spans a day


@pytest.fixture
def receivers():
    started = []

    def start(script=(), port: int = 0, **kwargs) -> Receiver:
        started.append(Receiver(script, port, **kwargs))
        return started[-1]

    yield start
    for receiver in started:
        receiver.stop()


LOOPBACK = callbacks.Policy.from_settings(WebhookSettings(allow_networks="127.0.0.1/32,::1/128", ports="1024-65535"))


def test_delivery_connects_to_the_checked_address_and_never_resolves_again(receivers):
    from worker import webhook_delivery as webhooks

    receiver = receivers()
    target = callbacks.check(f"http://localhost:{receiver.port}/hook?x=1", LOOPBACK)
    assert target.addresses == ("127.0.0.1",)
    assert webhooks.post(target, b"{}", {"Content-Type": "application/json"}, 10).status == 200
    assert receiver.requests[0].headers["host"] == f"localhost:{receiver.port}"
    assert receiver.requests[0].path == "/hook?x=1"
    # The name is only ever the Host header: a name no resolver knows still reaches the address
    # that was checked, so a second answer from DNS (rebinding) has nowhere to go.
    pinned = callbacks.Target("http://rebind.invalid/h", "http", "rebind.invalid", receiver.port, "/h",
                              ("127.0.0.1",))
    assert webhooks.post(pinned, b"{}", {}, 10).status == 200
    assert receiver.requests[1].headers["host"] == f"rebind.invalid:{receiver.port}"


def test_delivery_over_ipv6(receivers):
    from worker import webhook_delivery as webhooks

    receiver = receivers(host="::1")
    target = callbacks.check(f"http://[::1]:{receiver.port}/h", LOOPBACK)
    assert webhooks.post(target, b"{}", {}, 10).status == 200
    assert receiver.requests[0].headers["host"] == f"[::1]:{receiver.port}"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_https_delivery_sends_sni_and_verifies_the_certificate(receivers, tmp_path, monkeypatch):
    from worker import webhook_delivery as webhooks

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    names = []
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    tls.sni_callback = lambda sock, name, ctx: names.append(name)
    receiver = receivers(tls=tls)
    target = callbacks.check(f"https://localhost:{receiver.port}/h", LOOPBACK)
    with pytest.raises(webhooks.NetworkError, match="CERTIFICATE_VERIFY_FAILED"):
        webhooks.post(target, b"{}", {}, 10)  # self-signed: not trusted
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now it is, as a private CA would be
    assert webhooks.post(target, b"{}", {}, 10).status == 200
    assert names[-1] == "localhost" and receiver.requests[0].headers["host"] == f"localhost:{receiver.port}"
    wrong = callbacks.Target(target.url, "https", "other.example", receiver.port, "/h", ("127.0.0.1",))
    with pytest.raises(webhooks.NetworkError):
        webhooks.post(wrong, b"{}", {}, 10)  # the certificate is checked against the URL's name


@pytest.fixture(scope="module")
def cluster(redis_server, tmp_path_factory):
    redis.Redis.from_url(redis_server.url).flushall()
    root = tmp_path_factory.mktemp("webhooks")
    data = root / "data"
    data.mkdir()
    plain = {name: keys.new_key() for name in ("alpha", "rotor", "bare")}
    secrets = {"alpha": [keys.new_secret()], "rotor": [keys.new_secret(), keys.new_secret()], "bare": []}
    keys_file = root / "keys.toml"
    keys_file.write_text("\n".join(
        f'[[keys]]\ntenant = "{name}"\nsha256 = "{keys.hash_key(plain[name])}"\n'
        f'webhook_secrets = {json.dumps(secrets[name])}\n' for name in plain))
    env = {"VOXQ_API_KEYS_FILE": str(keys_file), "VOXQ_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32",
           "VOXQ_WEBHOOK_PORTS": "1024-65535", "VOXQ_WEBHOOK_RETRY_SCHEDULE": SCHEDULE}
    synth = Worker(redis_server.url, data, root / "synth.log", **env)
    hooks = Worker(redis_server.url, data, root / "hooks.log", queues="webhooks", pool="threads",
                   concurrency=4, name="hooks", **env)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    deadline = time.time() + 60
    while not {"interactive", "webhooks"} <= WorkerRegistry(client).alive_queues(6):
        for worker in (synth, hooks):
            if worker.proc.poll() is not None:
                pytest.fail(f"worker exited:\n{worker.log_path.read_text()[-3000:]}")
        assert time.time() < deadline, "workers did not start"
        time.sleep(0.1)
    yield SimpleNamespace(url=redis_server.url, data=data, keys=keys_file, plain=plain, secrets=secrets,
                          synth=synth, hooks=hooks, redis=client)
    synth.stop()
    hooks.stop()


@pytest.fixture
def api(cluster):
    from api.app import create_app

    app = create_app({"TESTING": True, "VOXQ_SETTINGS": {
        "redis_url": cluster.url, "data_dir": cluster.data, "jobs": {"heartbeat_ttl_s": 6},
        "keys": {"api_keys_file": str(cluster.keys)},
        "webhooks": {"allow_networks": "127.0.0.0/8", "ports": "1024-65535", "retry_schedule": SCHEDULE}}})
    return app.test_client()


def auth(cluster, tenant="alpha") -> dict:
    return {"Authorization": f"Bearer {cluster.plain[tenant]}"}


def submit(api, cluster, callback_url, tenant="alpha", **body):
    body.setdefault("text", "你好。回调测试。")
    response = api.post("/v1/jobs", json={**body, "callback_url": callback_url}, headers=auth(cluster, tenant))
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def wait_webhook(api, cluster, job_id, tenant="alpha", until=("delivered", "failed", "disabled"), timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = api.get(f"/v1/jobs/{job_id}", headers=auth(cluster, tenant)).get_json()
        if job["webhook"]["status"] in until and job["status"] in ("succeeded", "failed", "canceled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"webhook of {job_id} did not settle: {job['webhook']}")


def verify(secret: str, request) -> dict:
    return Webhook(secret).verify(request.body, request.headers)


def test_signed_webhook_reaches_an_allowlisted_loopback_receiver(api, cluster, receivers):
    receiver = receivers()
    job_id = submit(api, cluster, receiver.url, metadata={"order": 7})
    job = wait_webhook(api, cluster, job_id)
    assert job["webhook"]["status"] == "delivered", job["webhook"]
    assert job["webhook"]["attempts"] == 1 and job["webhook"]["last_status_code"] == 200
    assert job["webhook"]["next_attempt_at"] is None
    [request] = receiver.requests
    payload = verify(cluster.secrets["alpha"][0], request)
    assert payload["type"] == "job.succeeded"
    assert payload["timestamp"] == job["finished_at"]
    assert request.headers["webhook-id"].startswith("msg_")
    assert request.headers["content-type"] == "application/json"
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
    # The data is the job as GET shows it (its webhook block as it stood while being sent).
    sent, shown = dict(payload["data"]), dict(job)
    assert sent.pop("webhook")["status"] == "delivering"
    shown.pop("webhook")
    assert sent == shown and sent["metadata"] == {"order": 7}
    assert api.get(sent["result"]["audio_url"], headers=auth(cluster)).status_code == 200
    # Someone else's secret does not verify it.
    with pytest.raises(Exception):
        Webhook(cluster.secrets["rotor"][0]).verify(request.body, request.headers)


def test_a_job_of_many_chunks_sends_one_webhook_when_it_ends(api, cluster, receivers):
    receiver = receivers()
    text = "随着人工智能技术的快速发展，越来越多的企业开始使用智能语音助手。" * 6
    job = wait_webhook(api, cluster, submit(api, cluster, receiver.url, text=text), timeout=120)
    assert job["progress"]["chunks_total"] >= 3
    assert job["webhook"]["status"] == "delivered" and job["webhook"]["attempts"] == 1
    [request] = receiver.requests
    payload = verify(cluster.secrets["alpha"][0], request)
    assert payload["type"] == "job.succeeded" and payload["data"]["progress"]["chunks_done"] == job["progress"]["chunks_total"]


def test_secret_rotation_signs_with_both(api, cluster, receivers):
    receiver = receivers()
    job = wait_webhook(api, cluster, submit(api, cluster, receiver.url, tenant="rotor"), tenant="rotor")
    assert job["webhook"]["status"] == "delivered"
    [request] = receiver.requests
    signatures = request.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    for secret in cluster.secrets["rotor"]:  # a receiver on either secret accepts it
        assert verify(secret, request)["data"]["id"] == job["id"]


def test_receiver_down_then_up_gets_it_once_with_one_webhook_id(api, cluster, receivers):
    port = free_port()  # nothing listens here yet: connection refused
    job_id = submit(api, cluster, f"http://127.0.0.1:{port}/hook")
    deadline = time.time() + 30
    while True:
        webhook = api.get(f"/v1/jobs/{job_id}", headers=auth(cluster)).get_json()["webhook"]
        if webhook["attempts"] >= 2:
            break
        assert time.time() < deadline, webhook
        time.sleep(0.02)
    assert webhook["status"] in ("pending", "delivering") and webhook["last_status_code"] is None
    # Up, but overloaded at first: a 503, then a 429 asking for 2 s, then it takes it.
    receiver = receivers([(503, {}), (429, {"Retry-After": "2"})], port=port)
    job = wait_webhook(api, cluster, job_id)
    assert job["webhook"]["status"] == "delivered" and job["webhook"]["last_status_code"] == 200
    assert job["webhook"]["attempts"] >= 5  # two refused, a 503, a 429, the delivery
    assert len(receiver.requests) == 3
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert ids == {cluster.redis.hget(keyspace.job(job_id), "webhook_id")}
    for request in receiver.requests:
        verify(cluster.secrets["alpha"][0], request)
    assert receiver.requests[2].at - receiver.requests[1].at >= 1.9  # Retry-After honoured over the 1 s schedule
    wait_until(lambda: quiet(cluster.url), 30, what="no delivery left to run")
    assert len(receiver.requests) == 3  # delivered once: nothing more comes


def test_gone_disables_the_url_for_the_key_until_redelivered(api, cluster, receivers):
    receiver = receivers([(410, {})])
    job_id = submit(api, cluster, receiver.url)
    job = wait_webhook(api, cluster, job_id)
    assert job["webhook"]["status"] == "disabled" and job["webhook"]["last_status_code"] == 410
    wait_until(lambda: quiet(cluster.url), 30, what="no delivery left to run")
    assert len(receiver.requests) == 1  # 410 is not retried
    refused = api.post("/v1/jobs", json={"text": "再来。", "callback_url": receiver.url}, headers=auth(cluster))
    assert refused.status_code == 422 and refused.get_json()["error"]["code"] == "callback_url_disabled"
    # Another key's use of the same URL is its own business.
    assert api.post("/v1/jobs", json={"text": "再来。", "callback_url": receiver.url},
                    headers=auth(cluster, "rotor")).status_code == 202

    redelivered = api.post(f"/v1/jobs/{job_id}/webhook/redeliver", headers=auth(cluster))
    assert redelivered.status_code == 202 and redelivered.get_json()["webhook"]["status"] == "pending"
    job = wait_webhook(api, cluster, job_id)
    assert job["webhook"]["status"] == "delivered" and job["webhook"]["attempts"] == 2
    # The rotor key's job posts to the same receiver, so pick this job's two deliveries out.
    first, second = [r for r in receiver.requests if json.loads(r.body)["data"]["id"] == job_id]
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    assert verify(cluster.secrets["alpha"][0], second)["data"]["id"] == job_id
    assert api.post("/v1/jobs", json={"text": "又可以了。", "callback_url": receiver.url},
                    headers=auth(cluster)).status_code == 202


def test_redirect_is_a_failure_and_is_never_followed(api, cluster, receivers):
    internal = receivers()  # stands for the private service a redirect would reach
    receiver = receivers([(302, {"Location": internal.url}), (307, {"Location": internal.url})])
    job = wait_webhook(api, cluster, submit(api, cluster, receiver.url))
    assert job["webhook"]["status"] == "failed" and job["webhook"]["last_status_code"] == 302
    wait_until(lambda: quiet(cluster.url), 30, what="no delivery left to run")
    assert len(receiver.requests) == 1 and internal.requests == []


def test_delivery_checks_the_url_again(api, cluster):
    # The API allows 127.0.0.0/8, the webhook workers only 127.0.0.1: refused where it connects.
    job = wait_webhook(api, cluster, submit(api, cluster, f"http://127.0.0.2:{free_port()}/hook"))
    assert job["webhook"] == {"status": "failed", "attempts": 1, "last_status_code": None, "next_attempt_at": None}
    assert "127.0.0.2 (loopback)" in cluster.hooks.log_path.read_text()


def test_cancel_sends_job_canceled(api, cluster, receivers):
    receiver = receivers()
    job_id = submit(api, cluster, receiver.url, text="这是一个很长的句子，用来测试取消。" * 30, priority="batch")
    deadline = time.time() + 30
    while api.get(f"/v1/jobs/{job_id}", headers=auth(cluster)).get_json()["status"] != "running":
        assert time.time() < deadline
        time.sleep(0.02)
    assert api.delete(f"/v1/jobs/{job_id}", headers=auth(cluster)).status_code == 202
    job = wait_webhook(api, cluster, job_id)
    assert job["status"] == "canceled" and job["webhook"]["status"] == "delivered"
    # The worker notices the cancel at a segment boundary and must not send a second.
    wait_until(lambda: quiet(cluster.url), 30, what="the canceled job's chunks and deliveries to end")
    [request] = receiver.requests
    payload = verify(cluster.secrets["alpha"][0], request)
    assert payload["type"] == "job.canceled" and payload["data"]["status"] == "canceled"


def test_redeliver_needs_a_finished_job_with_a_callback(api, cluster):
    plain = wait_for(api, api.post("/v1/jobs", json={"text": "无回调。"}, headers=auth(cluster)).get_json()["id"],
                     headers=auth(cluster))
    response = api.post(f"/v1/jobs/{plain['id']}/webhook/redeliver", headers=auth(cluster))
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "no_callback"


def test_a_key_without_a_secret_cannot_ask_for_callbacks(api, cluster, receivers):
    response = api.post("/v1/jobs", json={"text": "你好。", "callback_url": receivers().url},
                        headers=auth(cluster, "bare"))
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "no_webhook_secret"


def test_webhooks_go_out_only_from_the_webhooks_queue(cluster):
    assert "voxq.deliver_webhook[" not in cluster.synth.log_path.read_text()
    assert "voxq.deliver_webhook[" in cluster.hooks.log_path.read_text()
    assert "voxq.synthesize[" not in cluster.hooks.log_path.read_text()
