"""What a new user meets in the first hour, as they meet it: the README's examples pasted into a
shell, the same refusal for a text with nothing to say on every face, fields named as sent, the
trailing newline of a file, and commands that say what they did."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
SH_BLOCKS = re.findall(r"```sh\n(.*?)```", README, re.DOTALL)
EMOJI = "🙂🎉"


def voxq(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "voxq", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def block_with(marker: str) -> str:
    found = [block for block in SH_BLOCKS if marker in block]
    assert len(found) == 1, f"one sh block of the README holds {marker!r}"
    return found[0]


# ---- the README ---------------------------------------------------------------------------------

@pytest.mark.parametrize("number", range(len(SH_BLOCKS)))
def test_every_shell_block_of_the_readme_is_valid_shell(number):
    # `curl …/<id>` was a syntax error: whatever a reader pastes must at least parse.
    run = subprocess.run(["bash", "-n"], input=SH_BLOCKS[number], capture_output=True, text=True, timeout=10)
    assert run.returncode == 0, f"README sh block {number}:\n{SH_BLOCKS[number]}\n{run.stderr}"


def test_the_readme_says_how_to_reach_voxq_and_its_size_is_measured():
    # `voxq` is in the venv only: the quick start and the CLI section say how to reach it.
    cli = block_with("voxq synth --file")
    assert cli.splitlines()[0].startswith(". .venv/bin/activate")
    assert ".venv/bin/voxq" in README
    assert "340 MB" not in README and "602M" in README


def _activate() -> str:
    """The venv these tests run in, for the README's `. .venv/bin/activate`."""
    return str(Path(sys.executable).parent / "activate")


def test_the_api_example_pastes_into_bash_and_gives_the_audio(cluster, tmp_path):
    host = cluster.url.removeprefix("http://")
    script = block_with("/v1/jobs/$id/audio").replace("localhost:5000", host)
    run = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert '"status":' in run.stdout  # the poll printed the job
    for name in ("out.mp3", "live.mp3"):
        data = (tmp_path / name).read_bytes()
        # MP3: an ID3 tag or a frame sync, never a JSON error saved under an audio name.
        assert data[:3] == b"ID3" or (data[0] == 0xFF and data[1] & 0xE0 == 0xE0), (name, data[:80])
        assert len(data) > 2000


def test_the_lexicon_example_runs_and_every_lexicon_command_says_what_it_did(cluster, tmp_path):
    script = block_with("cat > names.pls").replace("localhost:5000", cluster.url.removeprefix("http://"))
    script = f". {_activate()}\n" + script
    run = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "VOXQ_URL": cluster.url})
    assert run.returncode == 0, run.stderr
    assert "names: 2 entries" in run.stdout and "hang2" in run.stdout
    deleted = voxq("lexicon", "delete", "names", env={"VOXQ_URL": cluster.url})
    assert deleted.returncode == 0 and deleted.stdout.strip() == "names: deleted"
    assert voxq("lexicon", "list", env={"VOXQ_URL": cluster.url}).stdout.strip() == ""
    again = voxq("lexicon", "delete", "names", env={"VOXQ_URL": cluster.url})
    assert again.returncode == 2 and "404" in again.stderr


# ---- nothing to say: one rule, refused at once, on every face -----------------------------------

NOTHING = [EMOJI, "，。！？", "  🙂\n", "★☆♪"]


@pytest.mark.parametrize("text", NOTHING)
def test_text_with_nothing_to_say_is_refused_before_a_job_on_every_face(client, redis_url, text):
    jobs = client.post("/v1/jobs", json={"text": text})
    assert jobs.status_code == 422
    assert jobs.get_json()["error"] == {"code": "nothing_to_say", "field": "text",
                                        "message": "nothing to say: the text has no speakable characters"}
    seed = client.post("/tts", data={"text": text})
    assert seed.status_code == 422
    assert seed.get_json() == {"status": "error", "message": "nothing to say: the text has no speakable characters"}
    speech = client.post("/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": text})
    assert speech.status_code == 400
    assert speech.get_json()["error"] | {"message": None} == {
        "message": None, "type": "invalid_request_error", "param": "input", "code": "nothing_to_say"}
    preview = client.post("/v1/text/preview", json={"text": text})
    assert preview.status_code == 422 and preview.get_json()["error"]["code"] == "nothing_to_say"
    # Refused before anything was stored or queued.
    assert client.get("/v1/jobs").get_json()["jobs"] == []


def test_ssml_without_words_is_nothing_to_say_and_a_lexicon_alias_can_give_words(client, redis_url):
    response = client.post("/v1/jobs", json={"text": "<speak>🙂<break time='1s'/></speak>", "text_type": "ssml"})
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "nothing_to_say"
    assert client.put("/v1/lexicons/faces", json={"entries": [{"grapheme": "🙂", "alias": "微笑"}]}).status_code == 201
    # An alias turns the emoji into words: that text has something to say.
    assert client.post("/v1/jobs", json={"text": "🙂", "lexicons": ["faces"]}).status_code == 202
    assert client.post("/v1/jobs", json={"text": "<speak>🙂</speak>", "text_type": "ssml",
                                         "lexicons": ["faces"]}).status_code == 202
    assert client.post("/v1/jobs", json={"text": "🙂"}).status_code == 422  # not without it
    # Text with something to say passes, whatever else it holds.
    for text in ("🙂你好", "OK", "3", "<speak><say-as interpret-as='characters'>.</say-as></speak>"):
        kind = "ssml" if text.startswith("<") else "text"
        assert client.post("/v1/jobs", json={"text": text, "text_type": kind}).status_code == 202, text


def test_the_rule_never_refuses_what_the_front_end_would_say():
    from shared.text.frontend import speakable
    from shared.text.normalizer import KEEP, normalize

    # Sound: whatever it calls unspeakable, the front end turns into no speech. Every 61st code
    # point (a check of all 1.1 million found none either) and the characters the rules read.
    sample = [chr(cp) for cp in range(0x20, 0x110000, 61) if not 0xD800 <= cp <= 0xDFFF]
    sample += list("&+=×÷〇²㊀⼀①＋Ａ") + ["e\u0301", "No.", "$", "%"]
    for char in sample:
        if not speakable(char):
            assert normalize(char).strip(KEEP) == "", repr(char)
    assert not speakable(EMOJI * 10) and speakable(EMOJI + "好") and speakable("兙")


def test_the_rule_runs_no_front_end_on_a_long_text(monkeypatch):
    from shared.text import frontend

    def refuse(*args, **kwargs):
        raise AssertionError("the check ran the text front end")

    monkeypatch.setattr(frontend, "normalize_aligned", refuse)
    monkeypatch.setattr(frontend, "split_segments", refuse)
    assert not frontend.speakable(EMOJI * 50_000)
    assert frontend.speakable(EMOJI * 50_000 + "好")


def test_the_cli_refuses_like_the_api(tmp_path):
    for args in (["text", EMOJI], ["synth", EMOJI, "-o", str(tmp_path / "x.wav")]):
        run = voxq(*args)
        assert run.returncode == 2 and run.stderr.strip() == "voxq: error: nothing to say: the text has no " \
                                                              "speakable characters", run.stderr
    empty = voxq("text", "")
    assert empty.returncode == 2 and empty.stderr.strip() == "voxq: error: text is empty"
    assert empty.stdout == ""
    assert not (tmp_path / "x.wav").exists()


# ---- the trailing newline -----------------------------------------------------------------------

def test_a_trailing_newline_is_no_character(client, redis_url):
    accepted = client.post("/v1/jobs", json={"text": "好" * 100_000 + "\n \n"})
    assert accepted.status_code == 202
    job = client.get(accepted.headers["Location"]).get_json()
    assert job["text_chars"] == 100_000
    over = client.post("/v1/jobs", json={"text": "好" * 100_001 + "\n"})
    assert over.status_code == 413
    assert over.get_json()["error"]["message"] == "text has 100001 characters; the limit is 100000"
    # Leading whitespace counts: it is where every offset in the marks starts from.
    assert client.post("/v1/jobs", json={"text": "\n" + "好" * 100_000}).status_code == 413
    assert client.post("/v1/text/preview", json={"text": "好" * 5000 + "\n"}).status_code == 200
    from api.openai_speech import SpeechRequest

    assert len(SpeechRequest(model="tts-1", voice="alloy", input="好" * 4096 + "\n").input) == 4096


def test_the_cli_counts_a_file_as_the_api_does(tmp_path):
    exact = tmp_path / "ten.txt"
    exact.write_text("好" * 10 + "\n", encoding="utf-8")  # what an editor saves
    over = tmp_path / "eleven.txt"
    over.write_text("好" * 11 + "\n", encoding="utf-8")
    small = {"VOXQ_MAX_CHARS": "10"}
    assert voxq("text", "--file", str(exact), env=small).returncode == 0
    for command in (["text"], ["synth", "-o", str(tmp_path / "x.wav")]):
        run = voxq(*command, "--file", str(over), env=small)
        assert run.returncode == 2 and "text has 11 characters; the limit is 10" in run.stderr, run.stderr
    run = voxq("synth", "--file", str(exact), "-o", str(tmp_path / "ten.wav"), env=small)
    assert run.returncode == 0, run.stderr


# ---- errors name the field the user sent --------------------------------------------------------

@pytest.mark.parametrize("loudness", ["loud", -5, -45, True, "nan", [1]])
def test_a_bad_loudness_names_the_field_loudness(client, redis_url, loudness):
    error = client.post("/v1/jobs", json={"text": "你好", "loudness": loudness}).get_json()["error"]
    assert error["code"] == "invalid_request" and error["field"] == "loudness"
    assert error["message"].startswith('loudness: must be a target in LUFS from -40 to -10, or "off"; got ')
    speech = client.post("/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": "你好",
                                                   "loudness": loudness})
    assert speech.status_code == 400 and speech.get_json()["error"]["param"] == "loudness"


def test_good_loudness_values_still_pass(client, redis_url):
    for loudness in (-16, -16.5, "-20", "off", None):
        assert client.post("/v1/jobs", json={"text": "你好", "loudness": loudness}).status_code == 202, loudness
