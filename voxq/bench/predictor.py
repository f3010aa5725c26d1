"""The quality predictor of `voxq bench quality`: Microsoft's DNSMOS (P.835 and P.808 heads), whose
ONNX weights ship inside the `speechmos` wheel; language-independent, offline. A test extra."""
from __future__ import annotations

SAMPLE_RATE = 16_000


class PredictorError(RuntimeError):
    """speechmos (and its ONNX runtime) is not installed."""


def mos(audio) -> dict[str, float]:
    """DNSMOS of 16 kHz mono float32 `audio` in [-1, 1]: overall (P.835 OVRL) and P.808, each 1 to 5.
    Clips under the model's 9 s window are repeated to fill it, as DNSMOS itself does."""
    import numpy as np

    try:
        from speechmos import dnsmos
    except ModuleNotFoundError as exc:
        raise PredictorError(f"{exc.name} is not installed: pip install -e '.[test]'") from None
    scores = dnsmos.run(np.clip(audio, -1.0, 1.0).astype(np.float32), sr=SAMPLE_RATE)
    return {"ovrl": float(scores["ovrl_mos"]), "p808": float(scores["p808_mos"])}
