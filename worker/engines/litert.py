"""The default engine: the Baker FastSpeech2 + Multi-band MelGAN voice run by LiteRT on the CPU."""
from __future__ import annotations

import logging

import numpy as np

from shared.config import Settings
from worker import assets, pitch
from worker.emotions import PRESETS

from . import baker
from .base import AudioChunk, Prosody
from .tflite_graph import patched_acoustic_model

log = logging.getLogger(__name__)


class LiteRTEngine:
    name = "fastspeech2-litert"
    model_version = assets.MODEL_VERSION
    sample_rate = baker.SAMPLE_RATE
    voices = baker.VOICES
    emotions = tuple(PRESETS)

    def __init__(self, g2p, acoustic, vocoder):
        self.g2p = g2p
        self._acoustic = acoustic
        self._vocoder = vocoder
        self._inputs = {d["name"]: d["index"] for d in acoustic.get_input_details()}
        self._outputs = {d["name"]: d["index"] for d in acoustic.get_output_details()}
        self._mel_in = vocoder.get_input_details()[0]["index"]
        self._audio_out = vocoder.get_output_details()[0]["index"]

    @classmethod
    def load(cls, settings: Settings) -> "LiteRTEngine":
        from ai_edge_litert.interpreter import Interpreter

        found = assets.locate(settings.model_dir)
        threads = settings.engine_threads
        acoustic = Interpreter(model_content=patched_acoustic_model(found.acoustic), num_threads=threads)
        vocoder = Interpreter(model_path=str(found.vocoder), num_threads=threads)
        log.info("loaded %s (%s) with %d thread(s)", cls.name, found.acoustic.parent, threads)
        return cls(baker.load_g2p(found), acoustic, vocoder)

    def synthesize(self, text: str, prosody: Prosody = Prosody(), voice: str | None = None) -> AudioChunk:
        phonemes = self.g2p.convert(text)
        controls = baker.model_inputs(prosody)
        mel, durations = self._text_to_mel(phonemes.ids, controls)
        audio = self._mel_to_audio(mel)
        audio = pitch.shift(audio, self.sample_rate, controls.residual_pitch)
        marks = baker.marks_from_durations(phonemes, durations, mel.shape[1])
        return AudioChunk(audio, self.sample_rate, marks)

    def _text_to_mel(self, ids: list[int], controls: baker.ModelInputs):
        model = self._acoustic
        model.resize_tensor_input(self._inputs["input_ids"], [1, len(ids)])
        model.allocate_tensors()
        feeds = {
            "input_ids": np.array([ids], dtype=np.int32),
            "speaker_ids": np.zeros(1, dtype=np.int32),
            "speed_ratios": np.array([controls.speed_ratio], dtype=np.float32),
            "f0_ratios": np.array([controls.f0_ratio], dtype=np.float32),
            "energy_ratios": np.array([controls.energy_ratio], dtype=np.float32),
            "f0_offsets": np.array([controls.f0_offset], dtype=np.float32),
        }
        for name, value in feeds.items():
            model.set_tensor(self._inputs[name], value)
        model.invoke()
        # Identity_1 is the mel after the postnet; Identity_2 the per-symbol durations in frames.
        mel = model.get_tensor(self._outputs["Identity_1"])
        durations = model.get_tensor(self._outputs["Identity_2"])[0]
        return mel, durations

    def _mel_to_audio(self, mel: np.ndarray) -> np.ndarray:
        vocoder = self._vocoder
        vocoder.resize_tensor_input(self._mel_in, list(mel.shape))
        vocoder.allocate_tensors()
        vocoder.set_tensor(self._mel_in, mel)
        vocoder.invoke()
        return vocoder.get_tensor(self._audio_out)[0, :, 0].copy()
