"""The Baker FastSpeech2 + Multi-band MelGAN voice in PyTorch: CPU or CUDA, batched synthesis."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from shared.config import Settings
from worker import assets, pitch

from . import EngineError, baker
from .base import SegmentAudio, Engine, SynthesisConfig

try:
    import torch
except ImportError:  # the engine is optional: the error is raised when it is chosen
    torch = None

log = logging.getLogger(__name__)

DEVICES = ("cpu", "cuda")


@dataclass
class Spectrograms:
    """A batch of mels left on the engine's device between the acoustic model and the vocoder."""

    mel: "torch.Tensor"  # [B, T, 80]; frames past an item's own count are padding
    frames: list[int]
    durations: list[np.ndarray]  # per item: frames per input symbol

    def __len__(self) -> int:
        return len(self.frames)

    def item(self, index: int) -> np.ndarray:
        """One item's mel as the LiteRT engine returns it: [1, T, 80] float32."""
        return self.mel[index, : self.frames[index]].float().cpu().numpy()[None]


def _require_torch() -> None:
    if torch is None:
        raise EngineError(
            "the fastspeech2-torch engine needs PyTorch: pip install 'voxq[torch]' "
            "(or torch==2.13.0 from the PyTorch index that matches your CUDA)"
        )


def _device(name: str) -> "torch.device":
    if name not in DEVICES:
        raise EngineError(f"VOXQ_DEVICE must be one of {', '.join(DEVICES)}, not {name!r}")
    if name == "cuda":
        if not torch.backends.cuda.is_built():
            raise EngineError(
                f"VOXQ_DEVICE=cuda but PyTorch {torch.__version__} is a CPU-only build: install "
                "torch==2.13.0 from the PyTorch index that matches your CUDA"
            )
        # device_count() asks NVML, which does not start CUDA: a worker may still fork after this.
        if torch.cuda.device_count() == 0:
            raise EngineError("VOXQ_DEVICE=cuda but no CUDA device is visible to this process")
    return torch.device(name)


class TorchEngine(Engine):
    name = "fastspeech2-torch"
    model_version = assets.MODEL_VERSION
    sample_rate = baker.SAMPLE_RATE
    voices = baker.VOICES
    supports_batch = True

    def __init__(self, g2p, acoustic, vocoder, device):
        self.g2p = g2p
        self.acoustic = acoustic
        self.vocoder = vocoder
        self.device = device

    @classmethod
    def check(cls, settings: Settings) -> None:
        """What load() needs, checked without loading a model or starting CUDA."""
        _require_torch()
        _device(settings.engine.device)
        assets.locate(settings.engine.model_dir)

    @classmethod
    def load(cls, settings: Settings) -> "TorchEngine":
        _require_torch()
        from .torch_weights import load_fastspeech2, load_mb_melgan

        device = _device(settings.engine.device)
        if device.type == "cpu":
            torch.set_num_threads(settings.engine.threads)
        else:
            # Same input, same output, and parity with the CPU: no autotuned or TF32 kernels.
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        found = assets.locate(settings.engine.model_dir)
        acoustic = load_fastspeech2(found.acoustic).to(device)
        vocoder = load_mb_melgan(found.vocoder).to(device)
        log.info("loaded %s (%s) on %s", cls.name, found.acoustic.parent, device)
        return cls(baker.load_g2p(found), acoustic, vocoder, device)

    def synthesize(self, text: str, config: SynthesisConfig = SynthesisConfig()) -> SegmentAudio:
        return self.synthesize_batch([(text, config)])[0]

    def synthesize_batch(self, items: list[tuple[str, SynthesisConfig]]) -> list[SegmentAudio]:
        """Synthesize segments together, as one padded batch; each chunk is what synthesize()
        gives for that segment alone."""
        if not items:
            return []
        for _, config in items:
            self.voice(config.voice)  # one voice; an unknown name is an error, not a silent default
        phonemes = [self.g2p.convert(text, config.pinyin) for text, config in items]
        controls = [baker.model_inputs(config) for _, config in items]
        spectrograms = self.text_to_mel([p.ids for p in phonemes], controls)
        chunks = []
        for i, audio in enumerate(self.mel_to_audio(spectrograms)):
            audio = pitch.shift(audio, self.sample_rate, controls[i].residual_pitch)
            marks = baker.marks_from_durations(
                phonemes[i], spectrograms.durations[i], spectrograms.frames[i]
            )
            chunks.append(SegmentAudio(audio, self.sample_rate, marks))
        return chunks

    def text_to_mel(self, ids: list[list[int]], controls: list[baker.ModelInputs]) -> Spectrograms:
        """Symbol ids (one list per item, no zeros: 0 is padding) to mels and durations."""
        lengths = [len(item) for item in ids]
        padded = torch.zeros(len(ids), max(lengths), dtype=torch.long)
        for row, item in enumerate(ids):
            padded[row, : len(item)] = torch.tensor(item, dtype=torch.long)

        def column(values) -> torch.Tensor:
            return torch.tensor(list(values), dtype=torch.float32, device=self.device)

        with torch.inference_mode():
            out = self.acoustic(
                padded.to(self.device),
                column(c.speed_ratio for c in controls),
                column(c.f0_ratio for c in controls),
                column(c.energy_ratio for c in controls),
                column(c.f0_offset for c in controls),
            )
        durations = out.durations.cpu().numpy().astype(np.int32)
        return Spectrograms(
            out.mel,
            out.frames.tolist(),
            [durations[row, :n] for row, n in enumerate(lengths)],
        )

    def mel_to_audio(self, spectrograms: Spectrograms) -> list[np.ndarray]:
        """Each item's mono float32 audio, frames x hop samples long."""
        audio = [np.zeros(0, dtype=np.float32) for _ in range(len(spectrograms))]
        # An item with no frames has no audio; the vocoder needs at least one frame per item.
        spoken = [i for i, n in enumerate(spectrograms.frames) if n > 0]
        if not spoken:
            return audio
        frames = [spectrograms.frames[i] for i in spoken]
        with torch.inference_mode():
            mel = spectrograms.mel[spoken, : max(frames)]
            waves = self.vocoder(mel, frames).cpu().numpy()
        for row, i in enumerate(spoken):
            audio[i] = waves[row, : frames[row] * baker.HOP].copy()
        return audio
