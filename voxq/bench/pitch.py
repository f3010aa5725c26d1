"""`voxq bench pitch`: the model's f0 offset against WORLD, on the same sentence."""
from __future__ import annotations

from voxq.bench.corpus import corpus


def cmd_pitch(args) -> int:
    """Compare the two pitch mechanisms on the same sentence: the model's f0 offset and WORLD."""
    import math

    import numpy as np
    import pyworld

    from shared.config import Settings
    from worker import pitch
    from worker.engines import baker, load_engine

    engine = load_engine(Settings.load(engine={"name": "fastspeech2-litert"}))
    phonemes = engine.g2p.convert(corpus()[9])

    def speak(offset: float) -> np.ndarray:
        mel, _ = engine.text_to_mel(phonemes.ids, baker.ModelInputs(1.0, 1.0, 1.0, offset, 1.0))
        return engine.mel_to_audio(mel)

    def measure(x: np.ndarray) -> tuple[float, float]:
        x = x.astype(np.float64)
        f0, t = pyworld.dio(x, baker.SAMPLE_RATE)
        f0 = pyworld.stonemask(x, f0, t, baker.SAMPLE_RATE)
        ap = pyworld.d4c(x, f0, t, baker.SAMPLE_RATE)
        voiced = f0 > 0
        # Aperiodicity below ~2.3 kHz in voiced frames: how breathy or buzzy the excitation is.
        return float(np.median(f0[voiced])), float(ap[voiced][:, :200].mean())

    base = speak(0.0)
    f0_base, ap_base = measure(base)
    print(f"unshifted: median F0 {f0_base:.1f} Hz, voiced aperiodicity {ap_base:.3f}")
    print(f"{'ratio':>5} {'method':>12} {'F0 ratio':>8} {'aperiodicity change':>20}")
    for ratio in (0.85, 1.1):
        f0_model, ap_model = measure(speak(math.log(ratio) / pitch.LOG_RATIO_PER_OFFSET))
        f0_world, ap_world = measure(pitch.shift(base, baker.SAMPLE_RATE, ratio))
        for name, f0, ap in (("model f0", f0_model, ap_model), ("WORLD", f0_world, ap_world)):
            print(f"{ratio:>5} {name:>12} {f0 / f0_base:>8.3f} {100 * (ap / ap_base - 1):>19.1f}%")
    return 0


def add_parser(which) -> None:
    which.add_parser("pitch", help="model f0 offset vs WORLD for pitch shifts").set_defaults(
        func=cmd_pitch, quiet_native=True)
