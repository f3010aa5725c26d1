"""The default engine: the Baker FastSpeech2 + Multi-band MelGAN voice run by LiteRT on the CPU."""
from __future__ import annotations

import logging

import numpy as np

from shared.config import Settings
from worker import assets, pitch

from . import baker
from .base import SegmentAudio, Engine, SynthesisConfig
from .tflite_graph import patched_acoustic_model

log = logging.getLogger(__name__)

# Mel frames kept per vocoder call (2.2 s of audio). Each call vocodes 2 x VOCODER_CONTEXT frames
# more than it keeps, so a small window wastes time: measured on one core, 96 frames ran at 0.7 x
# the speed of 192 and above, which a whole call matches; the arena grows ~0.4 MB a frame (240
# frames: 35 MB more than 144), so the window stays bounded for long segments.
VOCODER_WINDOW = 192
VOCODER_CONTEXT = 24  # frames of context each side; the output is identical to one whole call
# The first window of a job's first segment spoken in pieces: 16 frames (0.2 s of audio) vocode
# in a few ms, so the first audio of a job goes out long before its first segment is vocoded.
# It costs the context of one more call (about 40 frames), so only the job's first segment pays it.
FIRST_PIECE_WINDOW = 16


class LiteRTEngine(Engine):
    name = "fastspeech2-litert"
    model_version = assets.MODEL_VERSION
    sample_rate = baker.SAMPLE_RATE
    voices = baker.VOICES

    def __init__(self, g2p, acoustic, vocoder, quick_vocoder=None):
        self.g2p = g2p
        self._acoustic = acoustic
        self._vocoder = vocoder
        # A second interpreter of the vocoder, kept at the shape of a job's first window: on the
        # one interpreter every job's first piece came after a re-plan from the last job's shape.
        self._quick_vocoder = quick_vocoder
        self._inputs = {d["name"]: d["index"] for d in acoustic.get_input_details()}
        self._outputs = {d["name"]: d["index"] for d in acoustic.get_output_details()}
        self._mel_in = vocoder.get_input_details()[0]["index"]
        self._audio_out = vocoder.get_output_details()[0]["index"]
        self._shapes: dict[int, tuple] = {}

    @classmethod
    def check(cls, settings: Settings) -> None:
        assets.locate(settings.engine.model_dir)

    @classmethod
    def load(cls, settings: Settings) -> "LiteRTEngine":
        from ai_edge_litert.interpreter import Interpreter

        found = assets.locate(settings.engine.model_dir)
        threads = settings.engine.threads
        acoustic = Interpreter(model_content=patched_acoustic_model(found.acoustic), num_threads=threads)
        vocoder = Interpreter(model_path=str(found.vocoder), num_threads=threads)
        quick_vocoder = Interpreter(model_path=str(found.vocoder), num_threads=threads)
        log.info("loaded %s (%s) with %d thread(s)", cls.name, found.acoustic.parent, threads)
        return cls(baker.load_g2p(found), acoustic, vocoder, quick_vocoder)

    def synthesize(self, text: str, config: SynthesisConfig = SynthesisConfig()) -> SegmentAudio:
        mel, marks, controls = self._mel(text, config)
        audio = pitch.shift(self.mel_to_audio(mel), self.sample_rate, controls.residual_pitch)
        return SegmentAudio(audio, self.sample_rate, marks)

    def synthesize_pieces(self, text: str, config: SynthesisConfig = SynthesisConfig(), quick_start: bool = True):
        mel, marks, controls = self._mel(text, config)
        if controls.residual_pitch != 1.0:
            # WORLD's pitch shift analyses the whole segment: it cannot go out in pieces.
            yield self.synthesize(text, config)
            return
        for index, audio in enumerate(self._windows(mel, FIRST_PIECE_WINDOW if quick_start else None)):
            yield SegmentAudio(audio, self.sample_rate, marks if index == 0 else [])

    def _mel(self, text: str, config: SynthesisConfig):
        self.voice(config.voice)  # one voice; an unknown name is an error, not a silent default
        phonemes = self.g2p.convert(text, config.pinyin)
        controls = baker.model_inputs(config)
        mel, durations = self.text_to_mel(phonemes.ids, controls)
        return mel, baker.marks_from_durations(phonemes, durations, mel.shape[1]), controls

    def text_to_mel(self, ids: list[int], controls: baker.ModelInputs):
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

    def mel_to_audio(self, mel: np.ndarray) -> np.ndarray:
        """Vocode in windows of frames with context on both sides.

        The vocoder's activations grow with the input (hundreds of MB for a long segment), and
        its receptive field is under 24 frames, so windows with 24 frames of context each side
        give bit-identical audio in bounded memory, and faster, since they stay in cache.
        """
        return np.concatenate(list(self._windows(mel)))

    def _windows(self, mel: np.ndarray, first: int | None = None):
        """The audio of `mel`, a call at a time: each call VOCODER_WINDOW + 2 x VOCODER_CONTEXT
        frames (one shape, since a new shape costs the runtime a re-plan of tens to hundreds of
        ms, as much as vocoding the window), keeping the frames with VOCODER_CONTEXT of context
        on both sides, or up to the segment's end, which needs none after it. A segment that fits
        one call is one call. `first`: the first call keeps only that many frames (the quick
        first piece of a job)."""
        frames = mel.shape[1]
        call = VOCODER_WINDOW + 2 * VOCODER_CONTEXT
        start = 0
        while start < frames:
            if start == 0 and first is not None:
                lo, hi = 0, min(frames, first + VOCODER_CONTEXT)
                end = frames if hi == frames else first
            else:
                lo = max(0, start - VOCODER_CONTEXT)
                hi = min(frames, lo + call)
                lo = max(0, hi - call)  # at the end: more context before, which changes no frame
                end = frames if hi == frames else hi - VOCODER_CONTEXT
            audio = self._vocode(np.ascontiguousarray(mel[:, lo:hi]))
            yield audio[(start - lo) * baker.HOP:(end - lo) * baker.HOP]
            start = end

    def _vocode(self, mel: np.ndarray) -> np.ndarray:
        quick = self._quick_vocoder is not None and mel.shape[1] == FIRST_PIECE_WINDOW + VOCODER_CONTEXT
        vocoder = self._quick_vocoder if quick else self._vocoder
        # Re-plan the arena only when the shape changes: inner windows all share one shape.
        if mel.shape != self._shapes.get(id(vocoder)):
            vocoder.resize_tensor_input(self._mel_in, list(mel.shape))
            vocoder.allocate_tensors()
            self._shapes[id(vocoder)] = mel.shape
        vocoder.set_tensor(self._mel_in, mel)
        vocoder.invoke()
        return vocoder.get_tensor(self._audio_out)[0, :, 0].copy()
