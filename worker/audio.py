"""Streaming audio output: resample with soxr, encode with soundfile, one chunk at a time."""
from __future__ import annotations

import numpy as np
import soundfile as sf
import soxr

# (soundfile container, subtype) per voxq format name.
_CODECS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "opus": ("OGG", "OPUS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "pcm": ("RAW", "PCM_16"),
}


class AudioWriter:
    """Write float32 chunks at the engine's rate into a file of the requested format and rate."""

    def __init__(self, path, fmt: str, in_rate: int, out_rate: int | None = None):
        container, subtype = _CODECS[fmt]
        self.in_rate = in_rate
        self.out_rate = out_rate or in_rate
        self.frames = 0
        self._resampler = (
            soxr.ResampleStream(in_rate, self.out_rate, 1, dtype="float32", quality="HQ")
            if self.out_rate != in_rate
            else None
        )
        self._file = sf.SoundFile(
            str(path), mode="w", samplerate=self.out_rate, channels=1,
            format=container, subtype=subtype, endian="LITTLE" if fmt == "pcm" else "FILE",
        )

    def write(self, samples: np.ndarray, last: bool = False) -> None:
        samples = np.clip(samples.astype(np.float32, copy=False), -1.0, 1.0)
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=last)
        if len(samples):
            self._file.write(samples)
            self.frames += len(samples)

    def close(self) -> None:
        if self._resampler is not None:
            self.write(np.zeros(0, dtype=np.float32), last=True)
            self._resampler = None
        self._file.close()

    def __enter__(self) -> "AudioWriter":
        return self

    def __exit__(self, *exc) -> None:
        if self._file.closed:
            return
        if exc[0] is None:
            self.close()
        else:
            self._file.close()


BLOCK_FRAMES = 65536  # what transcode holds at once: about 3 s at 24 kHz


def transcode(pcm_paths, out_path, fmt: str, rate: int) -> int:
    """Encode 16-bit PCM pieces (raw, little-endian, at `rate`), laid end to end, into one file of
    `fmt`, a block at a time. Returns the frames written."""
    container, subtype = _CODECS[fmt]
    frames = 0
    with sf.SoundFile(str(out_path), mode="w", samplerate=rate, channels=1, format=container,
                      subtype=subtype, endian="LITTLE" if fmt == "pcm" else "FILE") as out:
        for path in pcm_paths:
            with sf.SoundFile(str(path), mode="r", samplerate=rate, channels=1, format="RAW",
                              subtype="PCM_16", endian="LITTLE") as piece:
                for block in piece.blocks(blocksize=BLOCK_FRAMES, dtype="int16"):
                    out.write(block)
                    frames += len(block)
    return frames
