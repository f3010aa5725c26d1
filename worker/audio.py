"""Audio output: resample with soxr, band-limit for the telephone with scipy, encode with soundfile
(libsndfile) or, for AAC, PyAV (FFmpeg's encoder, shipped in its wheel); a block at a time."""
from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf
import soxr

# (soundfile container, subtype) per voxq format name (a stream piece's kind is a format name too).
_CODECS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "opus": ("OGG", "OPUS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "pcm": ("RAW", "PCM_16"),
    "mulaw": ("WAV", "ULAW"),
    "alaw": ("WAV", "ALAW"),
    "mulaw-raw": ("RAW", "ULAW"),
    "alaw-raw": ("RAW", "ALAW"),
}
# AAC through PyAV: (FFmpeg muxer, its options). "ipod" is FFmpeg's MP4 muxer with the M4A brand;
# faststart moves the index to the front once the file is written, so a player can start at once.
_AAC = {"aac": ("adts", {}), "m4a": ("ipod", {"movflags": "+faststart"})}
# Speech in mono: these rates keep AAC-LC clean at each sample rate without wasting bytes.
AAC_BITRATES = {8000: 24000, 16000: 48000, 22050: 64000, 24000: 64000, 44100: 96000, 48000: 96000}

# The telephone band (ITU-T G.712's 300-3400 Hz), as a 4th-order Butterworth band-pass.
TELEPHONE_BAND_HZ = (300.0, 3400.0)


class AacWriter:
    """Mono 16-bit blocks into AAC-LC (an ADTS stream, or an M4A file), through PyAV."""

    def __init__(self, path, kind: str, rate: int):
        import av  # imported here: only the workers that encode AAC load FFmpeg

        muxer, options = _AAC[kind]
        self.rate = rate
        self._file = av.open(str(path), mode="w", format=muxer, options=options)
        self._stream = self._file.add_stream("aac", rate=rate, layout="mono")
        self._stream.bit_rate = AAC_BITRATES.get(rate, 64000)
        self._frame = av.AudioFrame
        self._pts = 0

    def write(self, block: np.ndarray) -> None:
        if not len(block):
            return
        frame = self._frame.from_ndarray(np.ascontiguousarray(block, dtype=np.int16).reshape(1, -1),
                                         format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        self._pts += len(block)
        # PyAV converts to the encoder's sample format and frame size (1024) itself.
        for packet in self._stream.encode(frame):
            self._file.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode(None):
            self._file.mux(packet)
        self._file.close()

    def __enter__(self) -> "AacWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_encoder(path, kind: str, rate: int):
    """A writer of mono int16 blocks (write, close, context manager) for a format or piece kind."""
    if kind in _AAC:
        return AacWriter(path, kind, rate)
    container, subtype = _CODECS[kind]
    return sf.SoundFile(str(path), mode="w", samplerate=rate, channels=1, format=container, subtype=subtype,
                        endian="LITTLE" if container == "RAW" else "FILE")


class TelephoneBand:
    """The telephone band-pass, its state kept across blocks so that a chunk filters as one signal."""

    def __init__(self, rate: int):
        from scipy import signal

        self._signal = signal
        self._sos = signal.butter(4, TELEPHONE_BAND_HZ, btype="bandpass", fs=rate, output="sos")
        self._state = signal.sosfilt_zi(self._sos) * 0.0  # from rest: speech starts from silence

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        out, self._state = self._signal.sosfilt(self._sos, samples, zi=self._state)
        return out.astype(np.float32)


class Resampled:
    """Collect float32 blocks at the engine's rate as one chunk at the output rate (soxr, streaming),
    band-limited for the telephone when asked. A chunk is a few seconds to a few tens of seconds,
    so it is held whole: its loudness is measured before it is written."""

    def __init__(self, in_rate: int, out_rate: int, telephone: bool = False):
        self.out_rate = out_rate
        self._resampler = (soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")
                           if out_rate != in_rate else None)
        self._band = TelephoneBand(out_rate) if telephone else None
        self._parts: list[np.ndarray] = []

    def write(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        """Take a block; return what it adds at the output rate (kept too, for finish())."""
        samples = samples.astype(np.float32, copy=False)
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=last)
        if self._band is not None and len(samples):
            samples = self._band(samples)
        if len(samples):
            self._parts.append(samples)
        return samples

    def flush(self) -> np.ndarray:
        """The resampler's last samples, once the input has ended."""
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        tail = self.write(np.zeros(0, dtype=np.float32), last=True)
        self._resampler = None
        return tail

    def finish(self) -> np.ndarray:
        self.flush()
        parts, self._parts = self._parts, []
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def pcm16(samples: np.ndarray) -> bytes:
    """Float samples as raw 16-bit little-endian PCM, clipped to full scale: sample by sample, so
    blocks converted one at a time are the whole converted at once."""
    buffer = io.BytesIO()
    samples = np.clip(samples.astype(np.float32, copy=False), -1.0, 1.0)
    sf.write(buffer, samples, 8000, format="RAW", subtype="PCM_16", endian="LITTLE")
    return buffer.getvalue()


def g711(pcm: bytes, kind: str) -> bytes:
    """16-bit PCM as the raw G.711 bytes of `kind` (mulaw-raw, alaw-raw), sample by sample."""
    buffer = io.BytesIO()
    container, subtype = _CODECS[kind]
    sf.write(buffer, np.frombuffer(pcm, dtype="<i2"), 8000, format=container, subtype=subtype, endian="LITTLE")
    return buffer.getvalue()


def write_pcm(path, samples: np.ndarray, rate: int) -> int:
    """Float samples as raw 16-bit little-endian PCM (clipped to full scale); returns frames."""
    with open(path, "wb") as out:
        out.write(pcm16(samples))
    return len(samples)


BLOCK_FRAMES = 65536  # what transcode holds at once: about 3 s at 24 kHz


def _scaled(block: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1.0:
        return block  # untouched: with no gain to apply, the file is the pieces, bit for bit
    return np.clip(np.rint(block * np.float32(factor)), -32768, 32767).astype(np.int16)


def transcode(pcm_paths, out_path, kind: str, rate: int, gains=None) -> int:
    """Encode 16-bit PCM pieces (raw, little-endian, at `rate`), laid end to end, into one file of
    `kind` (a format or a stream-piece kind), a block at a time, each piece scaled by its factor in
    `gains` (none: as they are). Returns the frames written."""
    frames = 0
    pcm_paths = list(pcm_paths)
    gains = list(gains) if gains is not None else [1.0] * len(pcm_paths)
    with open_encoder(out_path, kind, rate) as out:
        for path, factor in zip(pcm_paths, gains):
            with sf.SoundFile(str(path), mode="r", samplerate=rate, channels=1, format="RAW",
                              subtype="PCM_16", endian="LITTLE") as piece:
                for block in piece.blocks(blocksize=BLOCK_FRAMES, dtype="int16"):
                    out.write(_scaled(block, factor))
                    frames += len(block)
    return frames


# The largest RIFF and data sizes: what a WAV of unknown length says, so a player reads on until
# the stream ends (the same as the PCM stream's header in api/streams.py).
_UNKNOWN = 0xFFFFFFFF


def stream_header(kind: str, rate: int) -> bytes:
    """A WAV header for a stream of `kind` (mulaw, alaw) of unknown length: libsndfile's own header
    for an empty file (its fmt and fact chunks), with the sizes set to the largest value."""
    buffer = io.BytesIO()
    container, subtype = _CODECS[kind]
    with sf.SoundFile(buffer, mode="w", samplerate=rate, channels=1, format=container, subtype=subtype):
        pass
    header = bytearray(buffer.getvalue())
    if header[:4] != b"RIFF" or header[-8:-4] != b"data":
        raise RuntimeError(f"unexpected {kind} WAV header from libsndfile: {bytes(header[:16])!r}")
    struct.pack_into("<I", header, 4, _UNKNOWN)
    struct.pack_into("<I", header, len(header) - 4, _UNKNOWN - len(header))
    return bytes(header)
