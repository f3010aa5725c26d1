"""Pronunciation lexicons: PLS and JSON, CRUD and limits per tenant, use by requests and the
preview, and the cache: an edited lexicon never answers with the audio of the old one."""
from __future__ import annotations

import pytest

from shared import keys
from shared.text.lexicon import Lexicon, LexiconError, parse
from shared.text import frontend
from tests.support import wait_for

PLS = """<?xml version="1.0" encoding="UTF-8"?>
<lexicon version="1.0" xmlns="http://www.w3.org/2005/01/pronunciation-lexicon" alphabet="x-amazon-pinyin"
         xml:lang="zh-CN">
  <lexeme><grapheme>行长</grapheme><phoneme>hang2 zhang3</phoneme></lexeme>
  <lexeme><grapheme>iPhone</grapheme><alias>爱疯</alias></lexeme>
  <lexeme><grapheme>WHO</grapheme><grapheme>W.H.O.</grapheme><alias>世界卫生组织</alias></lexeme>
</lexicon>"""
JSON_LEXICON = {"entries": [{"grapheme": "银行行长", "phoneme": "yin2 hang2 xing2 zhang3"},
                            {"grapheme": "行长", "phoneme": "xing2 zhang3"}]}


def lexicon(name: str, content: str) -> Lexicon:
    from shared.text.lexicon import content_hash

    return Lexicon.from_entries(name, parse(content, 100), content_hash(content))


def readings(text: str, lexicons) -> list[tuple[str, str, str]]:
    preview = frontend.preview(frontend.plan(text, lexicons=lexicons))
    return [(c["char"], c["pinyin"], c["source"]) for s in preview["segments"] for c in s["chars"]]


def test_pls_phonemes_and_aliases():
    pls = lexicon("pls", PLS)
    assert frontend.plan("我的iphone和WHO", lexicons=[pls])[0].text == "我的爱疯和世界卫生组织"
    assert ("行", "hang2", "lexicon") in readings("他是行长", [pls])
    assert frontend.plan("apple和iPhones", lexicons=[pls])[0].text != "苹果和爱疯"  # whole words only


def test_longest_match_wins_and_order_breaks_ties():
    import json

    pls, longer = lexicon("pls", PLS), lexicon("json", json.dumps(JSON_LEXICON))
    # 银行行长 (4 characters, second lexicon) beats 行长 (2, first lexicon): the longest match wins.
    assert [r[1] for r in readings("银行行长", [pls, longer])] == ["yin2", "hang2", "xing2", "zhang3"]
    # The same grapheme in both: the lexicon named first wins.
    assert ("行", "hang2", "lexicon") in readings("行长", [pls, longer])
    assert ("行", "xing2", "lexicon") in readings("行长", [longer, pls])


@pytest.mark.parametrize(("content", "message"), [
    ('{"entries": [{"grapheme": "行长", "phoneme": "hang2"}]}', "entry 1 ('行长'): 1 syllable(s) for 2"),
    ('{"entries": [{"grapheme": "行长", "phoneme": "hang9 zhang3"}]}', "'hang9' is not a tone-numbered"),
    ('{"entries": [{"grapheme": "x", "phoneme": "a1"}]}', "Chinese characters only"),
    ('{"entries": [{"grapheme": "行长"}]}', "exactly one of phoneme (pinyin) or alias"),
    ('{"entries": [{"grapheme": "", "alias": "a"}]}', "entry 1: needs a grapheme"),
    ('{"entries": [{"grapheme": "a", "alias": "b"}, {"grapheme": "A", "alias": "c"}]}', "already in the lexicon"),
    ('{"entries": []}', "no entries"),
    ("{not json", "not valid JSON"),
    ("<lexicon><lexeme><grapheme>行", "not well-formed XML"),
    ('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><lexicon/>', "entity declarations"),
    ('<lexicon xmlns="http://www.w3.org/2005/01/pronunciation-lexicon" alphabet="ipa"><lexeme>'
     "<grapheme>行</grapheme><phoneme>xɑŋ</phoneme></lexeme></lexicon>", "alphabet 'ipa' is not supported"),
    ("hello", "W3C PLS (XML) or JSON"),
])
def test_bad_lexicons_are_explained(content, message):
    with pytest.raises(LexiconError, match=None) as caught:
        parse(content, 100)
    assert message in str(caught.value)


@pytest.fixture
def tenants(redis_url, data_dir):
    from api.app import create_app

    plain = {name: keys.new_key() for name in ("alpha", "beta")}
    app = create_app({"TESTING": True, "VOXQ_SETTINGS": {
        "redis_url": redis_url, "data_dir": data_dir, "jobs": {"heartbeat_ttl_s": 6},
        "text": {"lexicon_max_entries": 4, "lexicons_per_tenant": 2, "lexicon_max_bytes": 2048},
        "keys": {"api_keys": ",".join(f"{t}:{keys.hash_key(k)}" for t, k in plain.items())}}})
    client = app.test_client()
    return client, {t: {"Authorization": f"Bearer {k}"} for t, k in plain.items()}


def test_crud_limits_and_tenant_isolation(tenants):
    client, auth = tenants
    alpha, beta = auth["alpha"], auth["beta"]
    created = client.put("/v1/lexicons/names", data=PLS, headers=alpha, content_type="application/pls+xml")
    assert created.status_code == 201 and created.get_json()["entries"] == 4
    replaced = client.put("/v1/lexicons/names", json=JSON_LEXICON, headers=alpha)
    assert replaced.status_code == 200 and replaced.get_json()["format"] == "json"
    got = client.get("/v1/lexicons/names", headers=alpha)
    assert got.status_code == 200 and got.mimetype == "application/json" and got.get_json() == JSON_LEXICON
    assert [x["name"] for x in client.get("/v1/lexicons", headers=alpha).get_json()["lexicons"]] == ["names"]
    # Another tenant: it does not exist.
    for method in ("get", "delete"):
        response = getattr(client, method)("/v1/lexicons/names", headers=beta)
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"
    assert client.get("/v1/lexicons", headers=beta).get_json()["lexicons"] == []
    unknown = client.post("/v1/jobs", json={"text": "你好", "lexicons": ["names"]}, headers=beta)
    assert unknown.status_code == 422 and unknown.get_json()["error"]["code"] == "unknown_lexicon"
    # Limits: entries, bytes, lexicons per tenant; bad names and bad entries.
    too_many = {"entries": [{"grapheme": f"词{i}", "alias": "x"} for i in range(5)]}
    response = client.put("/v1/lexicons/big", json=too_many, headers=alpha)
    assert response.status_code == 422 and "limit is 4" in response.get_json()["error"]["message"]
    response = client.put("/v1/lexicons/huge", data="<lexicon>" + " " * 3000 + "</lexicon>", headers=alpha)
    assert response.status_code == 413
    response = client.put("/v1/lexicons/bad", json={"entries": [{"grapheme": "行长", "phoneme": "hang2"}]},
                          headers=alpha)
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "invalid_lexicon"
    assert client.put("/v1/lexicons/bad%20name", json=JSON_LEXICON, headers=alpha).status_code == 422
    assert client.put("/v1/lexicons/second", json=JSON_LEXICON, headers=alpha).status_code == 201
    third = client.put("/v1/lexicons/third", json=JSON_LEXICON, headers=alpha)
    assert third.status_code == 409 and third.get_json()["error"]["code"] == "too_many_lexicons"
    assert client.delete("/v1/lexicons/second", headers=alpha).status_code == 204
    assert client.get("/v1/lexicons/second", headers=alpha).status_code == 404


def test_defaults_and_the_preview(tenants):
    client, auth = tenants
    alpha = auth["alpha"]
    client.put("/v1/lexicons/names", data=PLS, headers=alpha, content_type="application/pls+xml")
    plain = client.post("/v1/text/preview", json={"text": "行长说WHO"}, headers=alpha).get_json()
    assert plain["lexicons"] == [] and plain["normalized"] == "行长说达布留艾尺欧"
    assert client.put("/v1/lexicon-defaults", json={"lexicons": ["nope"]}, headers=alpha).status_code == 422
    assert client.put("/v1/lexicon-defaults", json={"lexicons": ["names"]}, headers=alpha).get_json() == {
        "lexicons": ["names"]}
    preview = client.post("/v1/text/preview", json={"text": "行长说WHO"}, headers=alpha).get_json()
    assert preview["lexicons"] == ["names"] and preview["normalized"] == "行长说世界卫生组织"
    first = preview["segments"][0]["chars"][0]
    assert (first["char"], first["pinyin"], first["source"], first["start"], first["end"]) == ("行", "hang2", "lexicon",
                                                                                                0, 1)
    assert preview["segments"][0]["chars"][3]["start"] == 3 and preview["segments"][0]["chars"][3]["end"] == 6
    # Naming lexicons explicitly (none at all) overrides the defaults.
    assert client.post("/v1/text/preview", json={"text": "行长", "lexicons": []},
                       headers=alpha).get_json()["lexicons"] == []
    # Deleting a default lexicon takes it off the list.
    client.delete("/v1/lexicons/names", headers=alpha)
    assert client.get("/v1/lexicon-defaults", headers=alpha).get_json() == {"lexicons": []}


def test_preview_sources_and_errors(client):
    preview = client.post("/v1/text/preview", json={"text": "你好，银行。不是"}).get_json()
    chars = {c["char"]: (c["pinyin"], c["source"]) for s in preview["segments"] for c in s["chars"]}
    assert chars["你"] == ("ni2", "sandhi") and chars["行"] == ("hang2", "word") and chars["不"][0] == "bu2"
    assert [s["text"] for s in preview["segments"]] == ["你好，银行。", "不是"]
    assert client.post("/v1/text/preview", json={"text": ""}).status_code == 422
    assert client.post("/v1/text/preview", json={"text": "好" * 6000}).status_code == 413
    assert client.post("/v1/text/preview", json={"txt": "x"}).status_code == 422


@pytest.mark.slow
def test_an_edited_lexicon_is_never_served_from_the_cache(client, worker):
    def job(**extra):
        body = client.post("/v1/jobs", json={"text": "他是行长。", **extra}).get_json()
        return wait_for(client, body["id"])

    assert client.put("/v1/lexicons/fix", json={"entries": [{"grapheme": "行长", "phoneme": "hang2 zhang3"}]}
                      ).status_code == 201
    first = job(lexicons=["fix"])
    again = job(lexicons=["fix"])
    assert first["status"] == again["status"] == "succeeded" and again["cache_hit"]
    assert client.put("/v1/lexicons/fix", json={"entries": [{"grapheme": "行长", "phoneme": "xing2 zhang3"}]}
                      ).status_code == 200
    edited = job(lexicons=["fix"])
    assert edited["status"] == "succeeded" and not edited["cache_hit"]
    assert edited["result"]["sha256"] != first["result"]["sha256"]
    # Same reading, different content (an alias added): still a new hash, so a new key.
    client.put("/v1/lexicons/fix", json={"entries": [{"grapheme": "行长", "phoneme": "xing2 zhang3"},
                                                     {"grapheme": "iPhone", "alias": "爱疯"}]})
    assert not job(lexicons=["fix"])["cache_hit"]
    # A lexicon deleted while its job waits fails the job, clearly.
    assert client.delete("/v1/lexicons/fix").status_code == 204
    assert client.post("/v1/jobs", json={"text": "x", "lexicons": ["fix"]}).status_code == 422
