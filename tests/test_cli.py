"""`voxq synth` as a user runs it: real process, real model; bad input is one clear line."""
from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
import soundfile as sf


def voxq(*args, stdin: bytes | None = None):
    return subprocess.run([sys.executable, "-m", "voxq", *args], input=stdin, capture_output=True, timeout=120)


def test_synth_text_file_and_stdin(tmp_path):
    text_file = tmp_path / "in.txt"
    text_file.write_text("今天天气很好。", encoding="utf-8")
    marks = tmp_path / "marks.json"
    out = tmp_path / "out.flac"
    run = voxq("synth", "--file", str(text_file), "-o", str(out), "--emotion", "happy",
               "--speed", "1.2", "--pitch", "1.1", "--sample-rate", "16000", "--marks", str(marks))
    assert run.returncode == 0, run.stderr
    info = sf.info(out)
    assert info.format == "FLAC" and info.samplerate == 16000 and info.duration > 0.5
    assert '"value": "今"' in marks.read_text(encoding="utf-8")

    out2 = tmp_path / "stdin.mp3"
    run = voxq("synth", "-o", str(out2), stdin="你好".encode())
    assert run.returncode == 0, run.stderr
    assert sf.info(out2).format == "MP3"


BAD = [
    (["synth", "", "-o", "{out}"], "text is empty"),
    (["synth", "   \n\t ", "-o", "{out}"], "text is empty"),
    (["synth", "😀🎉", "-o", "{out}"], "nothing to say"),
    (["synth", "\x01\x02\x03", "-o", "{out}"], "nothing to say"),
    (["synth", "--file", "{bad_utf8}", "-o", "{out}"], "not valid UTF-8"),
    (["synth", "--file", "{missing}", "-o", "{out}"], "cannot read"),
    (["synth", "--file", "{too_long}", "-o", "{out}"], "limit is 100000"),
    (["synth", "你好", "--emotion", "joyful", "-o", "{out}"], "valid: neutral, happy, sad, angry, calm, surprised"),
    (["synth", "你好", "--format", "aiff", "-o", "{out}"], "valid: wav, flac, ogg, opus, mp3, pcm"),
    (["synth", "你好", "--sample-rate", "11025", "-o", "{out}"], "valid: 8000, 16000, 22050, 24000, 44100, 48000"),
    (["synth", "你好", "--speed", "3", "-o", "{out}"], "speed"),
    (["synth", "你好", "--format", "opus", "--sample-rate", "44100", "-o", "{opus_out}"], "opus supports"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[b[1][:20] for b in BAD])
def test_bad_input_is_one_line_and_nonzero(tmp_path, args, message):
    bad_utf8 = tmp_path / "bad.txt"
    bad_utf8.write_bytes(b"\xff\xfe\xfa hello")
    too_long = tmp_path / "long.txt"
    too_long.write_text("好" * 100_001, encoding="utf-8")
    out = tmp_path / "out.wav"
    paths = {"out": out, "opus_out": tmp_path / "out.opus", "bad_utf8": bad_utf8, "missing": tmp_path / "nope.txt",
             "too_long": too_long}
    run = voxq(*[a.format(**paths) for a in args])
    stderr = run.stderr.decode()
    assert run.returncode != 0
    assert message in stderr
    assert "Traceback" not in stderr
    assert len([line for line in stderr.splitlines() if line.startswith("voxq: error")]) == 1
    assert not out.exists() and not paths["opus_out"].exists(), "no audio file for a failed request"


@pytest.mark.parametrize("args,message", [
    (["-o", "{dir}/e.wma"], "cannot write wma audio ({dir}/e.wma); use one of the extensions"),
    (["-o", "{dir}/x.mp3", "--format", "wav"], "--format wav contradicts the extension of {dir}/x.mp3 (mp3)"),
    (["-o", "{dir}/missing/x.wav"], "cannot write audio {dir}/missing/x.wav: the folder {dir}/missing does not exist"),
    (["-o", "{dir}/x.wav", "--marks", "{dir}/missing/m.json"], "cannot write marks {dir}/missing/m.json"),
], ids=["unknown-extension", "contradiction", "missing-folder", "missing-marks-folder"])
def test_output_problems_are_one_line_before_any_work(tmp_path, args, message):
    run = voxq("synth", "你好", *[a.format(dir=tmp_path) for a in args])
    stderr = run.stderr.decode()
    assert run.returncode == 2
    assert stderr.strip().startswith(f"voxq: error: {message.format(dir=tmp_path)}"), stderr
    assert len(stderr.splitlines()) == 1
    assert not any(tmp_path.iterdir()), "no file for a refused request"


def test_format_follows_the_extension_and_stdout_works(tmp_path, sample_rate):
    out = tmp_path / "x.ogg"
    run = voxq("synth", "你好", "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert sf.info(out).format == "OGG"
    # LiteRT's informational line from native code stays out of the output: only our summary.
    assert run.stderr.decode().splitlines() == [f"{out}: " + run.stderr.decode().split(": ", 1)[1].strip()]

    run = voxq("synth", "你好", "-o", "-", "--format", "flac")
    assert run.returncode == 0, run.stderr
    samples, rate = sf.read(io.BytesIO(run.stdout))
    assert rate == sample_rate and len(samples) > rate // 2
    assert run.stderr.decode().startswith("stdout: ") and len(run.stderr.decode().splitlines()) == 1


def test_telephone_and_aac_extensions(tmp_path):
    raw = tmp_path / "prompt.ulaw"
    run = voxq("synth", "您好，请按1。", "-o", str(raw), "--loudness", "-18")
    assert run.returncode == 0, run.stderr
    assert "mulaw-raw, 8000 Hz" in run.stderr.decode()
    samples, _ = sf.read(raw, samplerate=8000, channels=1, format="RAW", subtype="ULAW")
    assert len(samples) == raw.stat().st_size > 8000 and abs(samples).max() > 0.1
    wav = tmp_path / "prompt.wav"
    assert voxq("synth", "您好。", "-o", str(wav), "--format", "alaw").returncode == 0
    assert sf.info(wav).subtype == "ALAW" and sf.info(wav).samplerate == 8000
    run = voxq("synth", "您好。", "-o", str(tmp_path / "x.alaw"), "--sample-rate", "16000")
    assert run.returncode == 2 and "alaw-raw (G.711, telephone) supports only 8000 Hz" in run.stderr.decode()
    run = voxq("synth", "您好。", "-o", str(tmp_path / "x.m4a"), "--loudness", "loud")
    assert run.returncode == 2 and "invalid --loudness 'loud'" in run.stderr.decode()


def test_a_missing_engine_package_is_one_line(tmp_path):
    env = dict(os.environ, VOXQ_ENGINE="sambert")
    run = subprocess.run([sys.executable, "-m", "voxq", "synth", "你好", "-o", str(tmp_path / "x.wav")],
                         capture_output=True, timeout=120, env=env)
    stderr = run.stderr.decode()
    assert run.returncode == 2
    assert stderr.startswith("voxq: error: the sambert engine needs: ") and len(stderr.splitlines()) == 1


def test_version():
    from importlib.metadata import version

    run = voxq("--version")
    assert run.returncode == 0 and run.stdout.decode().strip() == f"voxq {version('voxq')}"


LEXICON = ('<lexicon version="1.0" xmlns="http://www.w3.org/2005/01/pronunciation-lexicon" alphabet="py">'
           "<lexeme><grapheme>行长</grapheme><phoneme>xing2 zhang3</phoneme></lexeme></lexicon>")


def test_synth_ssml_with_lexicons_and_subtitles(tmp_path):
    import srt

    first, second = tmp_path / "first.pls", tmp_path / "second.json"
    first.write_text(LEXICON, encoding="utf-8")
    second.write_text('{"entries": [{"grapheme": "行长", "phoneme": "hang2 zhang3"}]}', encoding="utf-8")
    out, subtitles = tmp_path / "out.wav", tmp_path / "out.srt"
    run = voxq("synth", "--ssml", "<speak><s>行长来了</s><s>在2023年</s></speak>", "-o", str(out),
               "--lexicon", str(first), "--lexicon", str(second), "--srt", str(subtitles))
    assert run.returncode == 0, run.stderr
    assert [c.content for c in srt.parse(subtitles.read_text(encoding="utf-8"))] == ["行长来了", "在2023年"]
    run = voxq("text", "--json", "行长", "--lexicon", str(first), "--lexicon", str(second))
    import json

    chars = json.loads(run.stdout)["segments"][0]["chars"]
    assert [(c["pinyin"], c["source"]) for c in chars] == [("xing2", "lexicon"), ("zhang3", "lexicon")]
    bad = voxq("synth", "--ssml", "<speak><voice/></speak>", "-o", str(out))
    assert bad.returncode == 2 and b"<voice> is not supported" in bad.stderr and b"Traceback" not in bad.stderr


def test_server_commands_read_their_defaults_through_the_settings(tmp_path):
    from voxq.network import free_port

    port = free_port()  # nothing listens here
    env = dict(os.environ, VOXQ_URL=f"http://127.0.0.1:{port}", REDIS_URL=f"redis://127.0.0.1:{port}/0")
    lexicons = subprocess.run([sys.executable, "-m", "voxq", "lexicon", "list"], capture_output=True, timeout=60,
                              env=env)
    assert lexicons.returncode == 2
    assert lexicons.stderr.decode().startswith(f"voxq: error: cannot reach http://127.0.0.1:{port}: ")
    status = subprocess.run([sys.executable, "-m", "voxq", "status", "--data-dir", str(tmp_path)],
                            capture_output=True, timeout=60, env=env)
    assert status.returncode == 2
    assert status.stderr.decode().startswith(f"voxq: error: Redis at redis://127.0.0.1:{port}/0 does not answer")
    bad = subprocess.run([sys.executable, "-m", "voxq", "lexicon", "list"], capture_output=True, timeout=60,
                         env=dict(env, REDIS_URL="http://not-redis"))
    assert bad.returncode == 2 and bad.stderr.decode().startswith("voxq: error: invalid settings: REDIS_URL: ")
    assert b"Traceback" not in bad.stderr
