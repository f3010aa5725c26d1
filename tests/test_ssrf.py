"""A callback URL cannot reach the internal network: the SSRF table, checked by the code and by the API."""
from __future__ import annotations

import base64
import os
import socket

import pytest

from shared import callback_policy as callbacks
from shared.config import Settings, SettingsError, WebhookSettings

BLOCKED = [
    "http://127.0.0.1/hook",
    "http://localhost/hook",
    "http://LOCALHOST./hook",
    "http://[::1]/hook",
    "http://0.0.0.0/hook",
    "http://[::]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:7f00:1]/hook",
    "http://10.0.0.1/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/hook",
    "http://100.64.0.1/hook",
    "http://2130706433/hook",  # 127.0.0.1 as one integer
    "http://0177.0.0.1/hook",  # octal
    "http://0x7f.0.0.1/hook",  # hex
    "http://0x7f000001/hook",
    "http://127.1/hook",  # short form
    "http://017700000001/hook",
    "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of 169.254.169.254
    "http://[2002:a00:1::]/hook",  # 6to4 of 10.0.0.1
    "http://[fc00::1]/hook",
    "http://224.0.0.1/hook",
    "http://[ff02::1]/hook",
    "http://240.0.0.1/hook",
    "http://255.255.255.255/hook",
    "http://198.18.0.1/hook",
    "http://[::127.0.0.1]/hook",  # IPv4-compatible, deprecated
    f"http://{socket.gethostname()}/hook",  # the machine's own name resolves to a loopback address
]

MALFORMED = [
    "ftp://8.8.8.8/hook",
    "file:///etc/passwd",
    "gopher://8.8.8.8:70/_",
    "javascript:alert(1)",
    "http://user:pass@8.8.8.8/hook",
    "http://8.8.8.8:22/hook",  # port not allowed
    "http://08.0.0.1/hook",  # not octal: resolvers disagree on it
    "http://256.0.0.1/hook",
    "http://[fe80::1%25eth0]/hook",
    "http:///hook",
    "http://bad_host!/hook",
]


@pytest.mark.parametrize("url", BLOCKED)
def test_internal_addresses_are_blocked(url):
    with pytest.raises(callbacks.CallbackError) as err:
        callbacks.check(url, callbacks.Policy.from_settings(WebhookSettings()))
    assert err.value.code == "callback_url_blocked" and not err.value.transient


@pytest.mark.parametrize("url", MALFORMED)
def test_malformed_or_unsupported_urls_are_refused(url):
    with pytest.raises(callbacks.CallbackError) as err:
        callbacks.check(url, callbacks.Policy.from_settings(WebhookSettings()))
    assert err.value.code in ("invalid_callback_url", "callback_url_blocked")


def test_a_name_is_blocked_if_any_of_its_addresses_is_internal():
    # A name with a public and a private address is refused: the one connected to could be either.
    # No real resolver here answers that, so the resolver is the one thing stood in for.
    def resolve(host, port, **_):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port))]

    with pytest.raises(callbacks.CallbackError, match="10.1.2.3"):
        callbacks.check("https://receiver.example/hook", callbacks.Policy.from_settings(WebhookSettings()), resolve)


def test_public_addresses_pass_and_the_checked_address_is_what_delivery_uses():
    policy = callbacks.Policy.from_settings(WebhookSettings())
    target = callbacks.check("https://8.8.8.8/hooks/tts?x=1", policy)
    assert target.addresses == ("8.8.8.8",) and target.port == 443 and target.path == "/hooks/tts?x=1"
    target = callbacks.check("http://[2606:4700::1111]:8080/h", policy)
    assert target.addresses == ("2606:4700::1111",) and target.host_header == "[2606:4700::1111]:8080"

    def resolve(host, port, **_):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]

    target = callbacks.check("https://Receiver.Example/hook", policy, resolve)
    assert target.host == "receiver.example" and target.addresses == ("93.184.216.34",)
    assert target.host_header == "receiver.example"


def test_allowlist_opens_only_the_listed_networks():
    policy = callbacks.Policy.from_settings(WebhookSettings(allow_networks="127.0.0.0/8, 10.20.0.0/16",
                                                            ports="443,9000-9100"))
    assert callbacks.check("http://localhost:9050/h", policy).addresses == ("127.0.0.1",)
    assert callbacks.check("https://10.20.3.4/h", policy).addresses == ("10.20.3.4",)
    assert callbacks.check("http://[::ffff:127.0.0.1]:9000/h", policy).addresses == ("::ffff:7f00:1",)
    for url in ("http://10.0.0.1:9000/h", "http://169.254.169.254:9000/", "http://127.0.0.1:80/"):
        with pytest.raises(callbacks.CallbackError):
            callbacks.check(url, policy)


def test_bad_settings_are_refused():
    for given, variable in (({"allow_networks": "not-a-cidr"}, "VOXQ_WEBHOOK_ALLOW_NETWORKS"),
                            ({"ports": "0"}, "VOXQ_WEBHOOK_PORTS"), ({"ports": "http"}, "VOXQ_WEBHOOK_PORTS")):
        with pytest.raises(SettingsError, match=variable):
            Settings.load(webhooks=given)


@pytest.fixture
def anon_client(redis_url, data_dir, tmp_path):
    from api.app import create_app

    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text(f'anonymous = "whsec_{base64.b64encode(os.urandom(32)).decode()}"\n')
    app = create_app({"TESTING": True, "VOXQ_SETTINGS": {"redis_url": redis_url, "data_dir": data_dir,
                                                         "keys": {"webhook_secrets_file": str(secrets_file)}}})
    return app.test_client()


@pytest.mark.parametrize("url", BLOCKED + MALFORMED)
def test_api_refuses_them_at_submit_with_422(anon_client, url):
    response = anon_client.post("/v1/jobs", json={"text": "你好。", "callback_url": url})
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["field"] == "callback_url" and error["message"]
    assert anon_client.get("/v1/jobs").get_json()["jobs"] == []


def test_api_refuses_an_overlong_callback_url(anon_client):
    url = "https://8.8.8.8/" + "a" * 2040
    response = anon_client.post("/v1/jobs", json={"text": "你好。", "callback_url": url})
    assert response.status_code == 422 and response.get_json()["error"]["field"] == "callback_url"
    assert "2048" in response.get_json()["error"]["message"]


def test_api_accepts_a_public_callback(anon_client):
    response = anon_client.post("/v1/jobs", json={"text": "你好。", "callback_url": "https://8.8.8.8/hook"})
    assert response.status_code == 202
    job = anon_client.get(response.headers["Location"]).get_json()
    assert job["webhook"] == {"status": "pending", "attempts": 0, "last_status_code": None, "next_attempt_at": None}


def test_api_needs_a_signing_secret_for_a_callback(client):
    response = client.post("/v1/jobs", json={"text": "你好。", "callback_url": "https://8.8.8.8/hook"})
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "no_webhook_secret"
