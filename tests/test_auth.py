"""API keys, tenants and limits: 401s, tenant isolation on every endpoint, per-key limits, size limits."""
from __future__ import annotations

import argparse
import contextlib
import io
import re

import pytest

from shared import keys
from shared.config import KeySettings, SettingsError
from tests.support import wait_for

TENANTS = {
    # tenant: extra TOML lines
    "alpha": "",
    "beta": "",
    "slow": "requests_per_minute = 3\n",
    "tight": "chars_per_day = 10\n",
}


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    """A keys file as an operator writes it, and the plain keys that only the clients hold."""
    path = tmp_path_factory.mktemp("keys") / "keys.toml"
    plain, entries = {}, []
    for tenant, extra in TENANTS.items():
        plain[tenant] = keys.new_key()
        entries.append(f'[[keys]]\ntenant = "{tenant}"\nsha256 = "{keys.hash_key(plain[tenant])}"\n{extra}'
                       f'webhook_secrets = ["{keys.new_secret()}"]\n')
    # A key being rotated: two keys, one tenant.
    plain["rot-old"], plain["rot-new"] = keys.new_key(), keys.new_key()
    entries.append(f'[[keys]]\ntenant = "rot"\nsha256 = ["{keys.hash_key(plain["rot-old"])}", '
                   f'"{keys.hash_key(plain["rot-new"])}"]\n')
    path.write_text("\n".join(entries))
    return path, plain


@pytest.fixture
def keyed(redis_url, data_dir, key_file):
    from api.app import create_app

    path, plain = key_file
    app = create_app({"TESTING": True,
                      "VOXQ_SETTINGS": {"redis_url": redis_url, "data_dir": data_dir, "jobs": {"heartbeat_ttl_s": 6},
                                        "limits": {"max_chars": 200}, "keys": {"api_keys_file": str(path)}}})
    return app.test_client(), plain


def test_without_a_key_or_with_a_bad_one_401(keyed):
    client, plain = keyed
    cases = [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"},
             bearer("vxq_not-a-real-key"), bearer(plain["alpha"] + "x"), {"Authorization": plain["alpha"]}]
    for headers in cases:
        for method, path in (("get", "/v1/jobs"), ("post", "/v1/jobs"), ("get", "/v1/voices")):
            response = getattr(client, method)(path, headers=headers, json={"text": "你好。"})
            assert response.status_code == 401, (headers, path)
            assert response.get_json()["error"]["code"] == "unauthorized"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # Probes stay open: orchestrators have no key.
    assert client.get("/healthz").status_code == 200
    assert client.get("/v1/jobs", headers=bearer(plain["alpha"])).status_code == 200
    assert client.get("/v1/jobs", headers={"Authorization": f"bearer  {plain['alpha']} "}).status_code == 200


def test_rotated_key_both_work_for_one_tenant(keyed):
    client, plain = keyed
    job = client.post("/v1/jobs", json={"text": "轮换。"}, headers=bearer(plain["rot-old"])).get_json()
    assert client.get(f"/v1/jobs/{job['id']}", headers=bearer(plain["rot-new"])).status_code == 200
    assert client.get(f"/v1/jobs/{job['id']}", headers=bearer(plain["alpha"])).status_code == 404


def test_tenant_isolation_on_every_endpoint(keyed, worker):
    client, plain = keyed
    mine, theirs = bearer(plain["alpha"]), bearer(plain["beta"])
    job = client.post("/v1/jobs", json={"text": "只属于我。", "marks": True}, headers=mine).get_json()
    done = wait_for(client, job["id"], headers=mine)
    assert done["status"] == "succeeded"
    other_job = client.post("/v1/jobs", json={"text": "别人的。"}, headers=theirs).get_json()

    never = "0123456789abcdef0123456789abcdef"
    base = f"/v1/jobs/{job['id']}"
    for method, suffix in (("get", ""), ("get", "/audio"), ("get", "/marks"), ("get", "/audio?encoding=base64"),
                           ("post", "/webhook/redeliver"), ("delete", "")):
        foreign = getattr(client, method)(base + suffix, headers=theirs)
        missing = getattr(client, method)(f"/v1/jobs/{never}{suffix}", headers=theirs)
        # Exactly what a job that never existed gets: nothing tells the ID is real.
        assert foreign.status_code == missing.status_code == 404, suffix
        assert foreign.get_json() == missing.get_json()
    assert client.get(base + "/audio", headers=mine).status_code == 200
    assert client.get(base + "/marks", headers=mine).status_code == 200

    listed = client.get("/v1/jobs", headers=theirs).get_json()["jobs"]
    assert [j["id"] for j in listed] == [other_job["id"]]
    assert [j["id"] for j in client.get("/v1/jobs", headers=mine).get_json()["jobs"]] == [job["id"]]
    assert client.get(base, headers=mine).get_json()["status"] == "succeeded"  # beta's DELETE did nothing
    assert client.delete(base, headers=mine).status_code == 204


def test_idempotency_keys_are_per_tenant(keyed):
    client, plain = keyed
    key = {"Idempotency-Key": "same-key"}
    a = client.post("/v1/jobs", json={"text": "一。"}, headers={**bearer(plain["alpha"]), **key}).get_json()
    b = client.post("/v1/jobs", json={"text": "二。"}, headers={**bearer(plain["beta"]), **key})
    assert b.status_code == 202 and b.get_json()["id"] != a["id"]


def test_requests_per_minute_429_with_retry_after(keyed):
    client, plain = keyed
    slow = bearer(plain["slow"])
    assert [client.get("/v1/jobs", headers=slow).status_code for _ in range(3)] == [200, 200, 200]
    limited = client.get("/v1/jobs", headers=slow)
    assert limited.status_code == 429 and limited.get_json()["error"]["code"] == "rate_limited"
    # Three a minute: the next one is allowed about 20 s after the first.
    assert 1 <= int(limited.headers["Retry-After"]) <= 20
    assert client.post("/v1/jobs", json={"text": "你好。"}, headers=slow).status_code == 429
    # The limit is the key's, not everyone's.
    assert client.get("/v1/jobs", headers=bearer(plain["alpha"])).status_code == 200


def test_characters_per_day(keyed):
    client, plain = keyed
    tight = bearer(plain["tight"])
    assert client.post("/v1/jobs", json={"text": "一二三四五六"}, headers=tight).status_code == 202
    over = client.post("/v1/jobs", json={"text": "一二三四五"}, headers=tight)
    assert over.status_code == 429 and over.get_json()["error"]["code"] == "chars_per_day_exceeded"
    assert 1 <= int(over.headers["Retry-After"]) <= 86400
    # A refused job costs nothing: what is left of the day can still be used.
    assert client.post("/v1/jobs", json={"text": "一二三四"}, headers=tight).status_code == 202
    too_big = client.post("/v1/jobs", json={"text": "一" * 11}, headers=bearer(plain["tight"]))
    assert too_big.status_code == 413 and too_big.get_json()["error"]["field"] == "text"
    assert len(client.get("/v1/jobs", headers=tight).get_json()["jobs"]) == 2


def test_idempotent_replay_is_not_charged_twice(keyed):
    client, plain = keyed
    headers = {**bearer(plain["tight"]), "Idempotency-Key": "k1"}
    first = client.post("/v1/jobs", json={"text": "一二三四五六七八"}, headers=headers)
    again = client.post("/v1/jobs", json={"text": "一二三四五六七八"}, headers=headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert client.post("/v1/jobs", json={"text": "一二"}, headers=bearer(plain["tight"])).status_code == 202


def test_size_limits_each_have_a_clear_error(keyed):
    client, plain = keyed
    alpha = bearer(plain["alpha"])
    body = client.post("/v1/jobs", data="x" * (2 << 20), content_type="application/json", headers=alpha)
    assert body.status_code == 413 and body.get_json()["error"]["code"] == "payload_too_large"
    text = client.post("/v1/jobs", json={"text": "好" * 201}, headers=alpha)
    assert text.status_code == 413 and text.get_json()["error"]["code"] == "text_too_long"
    meta = client.post("/v1/jobs", json={"text": "好", "metadata": {"k": "x" * 5000}}, headers=alpha)
    assert meta.status_code == 422 and meta.get_json()["error"]["field"] == "metadata"
    url = client.post("/v1/jobs", json={"text": "好", "callback_url": "https://8.8.8.8/" + "a" * 2100},
                      headers=alpha)
    assert url.status_code == 422 and url.get_json()["error"]["field"] == "callback_url"
    assert "2048" in url.get_json()["error"]["message"]
    assert client.get("/v1/jobs", headers=alpha).get_json()["jobs"] == []


def test_without_keys_every_caller_is_anonymous(client, redis_url):
    job = client.post("/v1/jobs", json={"text": "你好。"}).get_json()
    assert client.get(f"/v1/jobs/{job['id']}", headers=bearer("anything")).status_code == 200


def test_keys_from_the_environment_and_reloaded_when_the_file_changes(redis_url, data_dir, tmp_path):
    from api.app import create_app

    env_key, file_key = keys.new_key(), keys.new_key()
    path = tmp_path / "keys.toml"
    path.write_text("")
    app = create_app({"TESTING": True,
                      "VOXQ_SETTINGS": {"redis_url": redis_url, "data_dir": data_dir,
                                        "keys": {"api_keys": f"envtenant:{keys.hash_key(env_key)}",
                                                 "api_keys_file": str(path)}}})
    client = app.test_client()
    assert client.get("/v1/jobs", headers=bearer(env_key)).status_code == 200
    assert client.get("/v1/jobs", headers=bearer(file_key)).status_code == 401
    path.write_text(f'[[keys]]\ntenant = "late"\nsha256 = "{keys.hash_key(file_key)}"\n')
    assert client.get("/v1/jobs", headers=bearer(file_key)).status_code == 200
    path.write_text("[[keys]\nbroken")  # a bad edit keeps the last good keys
    assert client.get("/v1/jobs", headers=bearer(file_key)).status_code == 200


BAD_CONFIG = [
    ({"api_keys": "no-colon"}, keys.KeysError, "tenant:sha256hex"),
    ({"api_keys": "acme:" + "a" * 63}, keys.KeysError, "64 hex"),
    ({"api_keys": "bad tenant!:" + "a" * 64}, keys.KeysError, "tenant"),
    ({"api_keys_file": "/nonexistent/keys.toml"}, keys.KeysError, "no such file"),
    ({"rate_limit_per_minute": "lots"}, SettingsError, "VOXQ_RATE_LIMIT_PER_MINUTE: .*valid integer"),
]


@pytest.mark.parametrize("given,error,message", BAD_CONFIG)
def test_malformed_key_config_stops_the_start(given, error, message, redis_url):
    from api.app import create_app

    with pytest.raises(error, match=message):
        create_app({"TESTING": True, "VOXQ_SETTINGS": {"redis_url": redis_url, "keys": given}})


def test_keys_file_errors_name_the_problem(tmp_path):
    path = tmp_path / "keys.toml"
    for text, message in (
        ('[[keys]]\ntenant = "a"\nsha256 = "abc"\n', "64 hex"),
        (f'[[keys]]\ntenant = "a"\nsha256 = "{"a" * 64}"\nwebhook_secrets = ["whsec_c2hvcnQ="]\n', "24 to 64"),
        (f'[[keys]]\ntenant = "a"\nsha256 = "{"a" * 64}"\nwebhook_secret = "x"\n', "unknown fields"),
        (f'[[keys]]\ntenant = "a"\nsha256 = "{"a" * 64}"\n[[keys]]\ntenant = "b"\nsha256 = "{"a" * 64}"\n',
         "two tenants"),
        (f'[[keys]]\ntenant = "a"\nsha256 = "{"a" * 64}"\nchars_per_day = -1\n', "chars_per_day"),
    ):
        path.write_text(text)
        with pytest.raises(keys.KeysError, match=message):
            keys.load(KeySettings(api_keys="", api_keys_file=path))


def test_keys_configured(tmp_path):
    assert not keys.keys_configured(KeySettings(api_keys=""))
    assert not keys.keys_configured(KeySettings(api_keys=" , "))
    secrets_only = tmp_path / "secrets.toml"
    secrets_only.write_text(f'anonymous = "{keys.new_secret()}"\n')
    assert not keys.keys_configured(KeySettings(api_keys="", webhook_secrets_file=secrets_only))
    assert keys.keys_configured(KeySettings(api_keys=f"a:{'0' * 64}"))


def test_voxq_keys_create_prints_a_working_entry_once(tmp_path):
    from voxq import keys as keys_cli

    parser = argparse.ArgumentParser()
    keys_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["keys", "create", "--tenant", "acme", "--requests-per-minute", "60"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert args.func(args) == 0
    text = out.getvalue()
    key = re.search(r"^\s+(vxq_\S+)$", text, re.M).group(1)
    secret = re.search(r"^\s+(whsec_\S+)$", text, re.M).group(1)
    entry = text[text.index("[[keys]]"):text.index("\n\n", text.index("[[keys]]"))]
    path = tmp_path / "keys.toml"
    path.write_text(entry + "\n")
    ring = keys.load(KeySettings(api_keys="", api_keys_file=path))
    tenant = ring.tenant_for_key(key)
    assert tenant.name == "acme" and tenant.requests_per_minute == 60 and tenant.webhook_secrets == (secret,)
    assert len(keys.secret_bytes(secret)) == 32
    env_line = re.search(r"^\s+(acme:[0-9a-f]{64})$", text, re.M).group(1)
    assert keys.load(KeySettings(api_keys=env_line)).tenant_for_key(key).name == "acme"
    assert key not in path.read_text()  # only its hash is ever written down
