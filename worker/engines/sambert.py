"""ModelScope's Sambert-Hifigan (16 kHz, four emotional voices) as an optional engine.

It needs packages and a model that the offline default cannot reach: `modelscope` (PyPI, via
`pip install "voxq[sambert]"`), `kantts` and `ttsfrd` (ModelScope's own package index), and the
model directory (ModelScope's hub). When any is missing the worker fails at start-up and says
exactly what to install and from where. This engine is not run in voxq's CI.
"""
from __future__ import annotations

import importlib.util
import io
import logging
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from shared.config import Settings
from worker import pitch

from .base import SegmentAudio, Engine, SynthesisConfig, VoiceInfo

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
MODELSCOPE_INDEX = "https://modelscope.oss-cn-beijing.aliyuncs.com/releases/repo.html"

VOICES = [
    VoiceInfo("zhitian_emo", "zh-CN", "female", "知甜 (Sambert, emotional)"),
    VoiceInfo("zhiyan_emo", "zh-CN", "female", "知燕 (Sambert, emotional)"),
    VoiceInfo("zhibei_emo", "zh-CN", "child", "知贝 (Sambert, emotional)"),
    VoiceInfo("zhizhe_emo", "zh-CN", "male", "知哲 (Sambert, emotional)"),
]
# voxq's emotion names → the categories of Sambert's SSML <emotion category=...> element.
EMOTION_CATEGORIES = {
    "neutral": "neutral",
    "happy": "happy",
    "sad": "sad",
    "angry": "angry",
    "calm": "neutral",
    "surprised": "surprise",
}

_REQUIREMENTS = (
    ("modelscope", 'pip install "voxq[sambert]"  (modelscope from PyPI)'),
    ("kantts", f"pip install kantts -f {MODELSCOPE_INDEX}  (ModelScope's package index)"),
    ("ttsfrd", f"pip install ttsfrd -f {MODELSCOPE_INDEX}  (ModelScope's package index)"),
)


class MissingDependency(RuntimeError):
    """Something Sambert needs is not installed; the message says what and from where."""


def missing_requirements(find_spec=importlib.util.find_spec) -> list[str]:
    return [how for module, how in _REQUIREMENTS if find_spec(module) is None]


def model_directory(settings: Settings) -> Path:
    folder = Path(settings.engine.model_dir) if settings.engine.model_dir else None
    if folder is None or not (folder / "configuration.json").is_file():
        model_id = settings.engine.sambert_model
        raise MissingDependency(
            f"the Sambert model directory is missing: download {model_id} from ModelScope's hub on a "
            f"connected machine (`modelscope download --model {model_id} --local_dir DIR`), copy DIR "
            "here and set VOXQ_MODEL_DIR=DIR (it must hold configuration.json)"
        )
    return folder


def ssml(text: str, emotion: str) -> str:
    """Wrap a segment in Sambert's emotion element; unknown emotions fall back to neutral."""
    category = EMOTION_CATEGORIES.get(emotion, "neutral")
    if category == "neutral":
        return text
    return f'<speak><emotion category="{category}" intensity="1.0">{escape(text)}</emotion></speak>'


class SambertEngine(Engine):
    name = "sambert"
    sample_rate = SAMPLE_RATE
    voices = VOICES
    emotions = tuple(EMOTION_CATEGORIES)
    native_emotions = True

    def __init__(self, pipeline, model_version: str):
        self._pipeline = pipeline
        self.model_version = model_version

    @classmethod
    def check(cls, settings: Settings) -> Path:
        missing = missing_requirements()
        if missing:
            raise MissingDependency("the sambert engine needs: " + "; ".join(missing))
        return model_directory(settings)

    @classmethod
    def load(cls, settings: Settings) -> "SambertEngine":
        folder = cls.check(settings)
        from modelscope.pipelines import pipeline
        from modelscope.utils.constant import Tasks

        # A local directory: ModelScope reads it and never reaches for its hub.
        tts = pipeline(task=Tasks.text_to_speech, model=str(folder), device=settings.engine.device)
        log.info("loaded sambert from %s", folder)
        return cls(tts, f"sambert:{folder.name}")

    def synthesize(self, text: str, config: SynthesisConfig = SynthesisConfig()) -> SegmentAudio:
        import soundfile as sf
        from modelscope.outputs import OutputKeys

        output = self._pipeline(input=ssml(text, config.emotion), voice=self.voice(config.voice))
        samples, rate = sf.read(io.BytesIO(output[OutputKeys.OUTPUT_WAV]), dtype="float32")
        samples = pitch.shift(np.asarray(samples), rate, config.pitch)
        # Sambert's pipeline exposes no speed control and no durations: speed is not applied
        # (the README says so) and the engine returns no timing marks.
        return SegmentAudio(samples, rate, [])
