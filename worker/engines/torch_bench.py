"""Throughput of the PyTorch engine per batch size, against the LiteRT engine, on a fixed corpus."""
from __future__ import annotations

import json
import logging
import time

from shared.config import Settings

from . import baker
from .base import SynthesisConfig

log = logging.getLogger(__name__)

# A fixed corpus as the Baker symbols the G2P gave for each sentence when it was written down,
# so that the figures (and the parity tests that share it) do not move when the G2P changes.
CORPUS: tuple[tuple[str, str], ...] = (
    ("欢迎使用语音合成服务。",
     "sil h uan1 #0 ^ ing2 #1 sh iii3 #0 ^ iong4 #1 ^ v3 #0 ^ in1 #1 h e2 #0 ch eng2 #1 f u2 #0 "
     "^ u4 sil eos"),
    ("今天天气很好，我们一起去公园散步吧。",
     "sil j in1 #0 t ian1 #0 t ian1 #0 q i4 #1 h en2 #1 h ao3 #3 ^ uo3 #0 m en5 #1 ^ i4 #0 q i3 #1 "
     "q v4 #1 g ong1 #0 ^ van2 #1 s an4 #0 b u4 #1 b a5 sil eos"),
    ("北京是中华人民共和国的首都。",
     "sil b ei3 #0 j ing1 #1 sh iii4 #1 zh ong1 #0 h ua2 #0 r en2 #0 m in2 #0 g ong4 #0 h e2 #0 "
     "g uo2 #1 d e5 #1 sh ou3 #0 d u1 sil eos"),
    ("这款软件支持中文文本转换为自然流畅的语音。",
     "sil zh e4 #1 k uan2 #1 r uan3 #0 j ian4 #1 zh iii1 #0 ch iii2 #1 zh ong1 #0 ^ uen2 #1 ^ uen2 "
     "#0 b en2 #1 zh uan3 #0 h uan4 #1 ^ uei4 #1 z ii4 #0 r an2 #1 l iou2 #0 ch ang4 #1 d e5 #1 "
     "^ v3 #0 ^ in1 sil eos"),
    ("请在听到提示音后留言。",
     "sil q ing3 #1 z ai4 #1 t ing1 #0 d ao4 #1 t i2 #0 sh iii4 #0 ^ in1 #1 h ou4 #1 l iou2 #0 "
     "^ ian2 sil eos"),
    ("他昨天晚上十点才下班回家。",
     "sil t a1 #1 z uo2 #0 t ian1 #0 ^ uan3 #0 sh ang4 #1 sh iii2 #0 d ian3 #1 c ai2 #1 x ia4 #0 "
     "b an1 #1 h uei2 #0 j ia1 sil eos"),
    ("科学技术是第一生产力。",
     "sil k e1 #0 x ve2 #0 j i4 #0 sh u4 #1 sh iii4 #1 d i4 #0 ^ i1 #1 sh eng1 #0 ch an3 #0 l i4 "
     "sil eos"),
    ("春眠不觉晓，处处闻啼鸟。",
     "sil ch uen1 #0 m ian2 #1 b u4 #0 j ve2 #1 x iao3 #3 ch u4 #0 ch u4 #1 ^ uen2 #0 t i2 #0 "
     "n iao3 sil eos"),
    ("如果明天下雨，运动会就推迟举行。",
     "sil r u2 #0 g uo3 #1 m ing2 #0 t ian1 #1 x ia4 #0 ^ v3 #3 ^ vn4 #0 d ong4 #0 h uei4 #1 "
     "j iou4 #1 t uei1 #0 ch iii2 #1 j v3 #0 x ing2 sil eos"),
    ("你好。", "sil n i2 #0 h ao3 sil eos"),
    ("我们的目标是让每个人都能听到清晰的声音。",
     "sil ^ uo3 #0 m en5 #1 d e5 #1 m u4 #0 b iao1 #1 sh iii4 #1 r ang4 #1 m ei3 #0 g e4 #1 "
     "r en2 #1 d ou1 #1 n eng2 #1 t ing1 #0 d ao4 #1 q ing1 #0 x i1 #1 d e5 #1 sh eng1 #0 ^ in1 "
     "sil eos"),
    ("火车将于下午三点二十分到达上海虹桥站。",
     "sil h uo3 #0 ch e1 #1 j iang1 #1 ^ v2 #1 x ia4 #0 ^ u3 #1 s an1 #0 d ian3 #1 ^ er4 #0 "
     "sh iii2 #0 f en1 #1 d ao4 #0 d a2 #1 sh ang4 #0 h ai3 #1 h ong2 #0 q iao2 #1 zh an4 sil eos"),
)


def corpus_ids(mapper_path) -> list[list[int]]:
    """The corpus as model input ids, through the voice's own symbol table."""
    with open(mapper_path, encoding="utf-8") as fh:
        symbol_to_id = json.load(fh)["symbol_to_id"]
    return [[symbol_to_id[s] for s in symbols.split()] for _, symbols in CORPUS]


def _timed(run, repeats: int) -> tuple[float, float]:
    """(best wall seconds over `repeats`, audio seconds made by one run)."""
    best, audio_s = float("inf"), 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        audio_s = run()
        best = min(best, time.perf_counter() - start)
    return best, audio_s


def bench(batch_sizes, device: str = "cpu", settings: Settings | None = None,
          repeats: int = 2, sentences: int | None = None) -> list[dict]:
    """Throughput (audio seconds per wall second) and RTF of the PyTorch engine per batch size,
    with the LiteRT engine's on the same corpus and the ratio between them.

    The corpus is synthesized whole at every batch size, in batches of that size, from model
    ids to audio (the G2P is left out: both engines share it). Each figure is the best of
    `repeats` runs after one warm-up run. `sentences` takes the corpus's first few, or goes round
    it again for more (a GPU's larger batches need more sentences than the corpus has).
    """
    from worker import assets

    from .litert import LiteRTEngine
    from .torch_fs2 import TorchEngine

    settings = settings or Settings.load()
    settings = settings.model_copy(update={"engine": settings.engine.model_copy(update={"device": device})})
    found = assets.locate(settings.engine.model_dir)
    ids = corpus_ids(found.mapper)
    ids = [ids[i % len(ids)] for i in range(sentences or len(ids))]
    controls = baker.model_inputs(SynthesisConfig())

    litert = LiteRTEngine.load(settings)

    def run_litert() -> float:
        seconds = 0.0
        for sentence in ids:
            mel, _ = litert.text_to_mel(sentence, controls)
            seconds += len(litert.mel_to_audio(mel)) / litert.sample_rate
        return seconds

    run_litert()
    litert_wall, audio_s = _timed(run_litert, repeats)
    litert_throughput = audio_s / litert_wall
    log.info("litert: %.1f s of audio in %.2f s", audio_s, litert_wall)

    engine = TorchEngine.load(settings)
    rows = []
    for size in batch_sizes:
        batches = [ids[i:i + size] for i in range(0, len(ids), size)]

        def run_torch() -> float:
            seconds = 0.0
            for batch in batches:
                spectrograms = engine.text_to_mel(batch, [controls] * len(batch))
                for audio in engine.mel_to_audio(spectrograms):
                    seconds += len(audio) / engine.sample_rate
            return seconds

        run_torch()
        wall, audio_s = _timed(run_torch, repeats)
        rows.append({
            "engine": engine.name,
            "device": device,
            "batch": size,
            "sentences": len(ids),
            "audio_s": round(audio_s, 3),
            "wall_s": round(wall, 4),
            "throughput": round(audio_s / wall, 2),
            "rtf": round(wall / audio_s, 5),
            "litert_throughput": round(litert_throughput, 2),
            "litert_rtf": round(litert_wall / audio_s, 5),
            "ratio_to_litert": round(audio_s / wall / litert_throughput, 3),
        })
        log.info("batch %d: %s", size, rows[-1])
    single = next((row["throughput"] for row in rows if row["batch"] == 1), None)
    for row in rows:
        row["gain_vs_batch_1"] = round(row["throughput"] / single, 3) if single else None
    return rows
