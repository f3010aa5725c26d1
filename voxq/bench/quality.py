"""`voxq bench quality`: how well the default voice is understood, by an outside listener.

The corpus (voxq/bench/quality_corpus.tsv) is spoken in this process through the worker's own
pipeline, once per variant (wideband, the 8 kHz telephone codecs, each emotion, two speeds);
Whisper base transcribes each sentence; the figures are the syllable error rate with tones and
the character error rate against the expected reading, DNSMOS's mean score, and the front end's
own misreadings (what no voice could say right). A test extra: faster-whisper, the Whisper
wheels, speechmos, jiwer.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from voxq.errors import CliError

logger = logging.getLogger(__name__)

# Each variant's options on top of the defaults; "wideband" is the voice as a file gets it.
VARIANTS: dict[str, dict] = {
    "wideband": {},
    # The 8 kHz band limit alone (16-bit WAV, no G.711): what any telephone line costs, whatever
    # its codec. mulaw against it is what voxq's G.711 path adds (filter, level, companding).
    "narrowband": {"format": "wav", "sample_rate": 8000},
    # The same speech 1 dB quieter, which no listener would hear differently: Whisper's greedy
    # decoding still flips on it, and its distance from wideband is the figures' own spread, the
    # smallest change in the voice that they can show.
    "wideband-1db": {"loudness": -24.0},
    "mulaw": {"format": "mulaw", "sample_rate": 8000},
    "alaw": {"format": "alaw", "sample_rate": 8000},
    "happy": {"emotion": "happy"},
    "sad": {"emotion": "sad"},
    "angry": {"emotion": "angry"},
    "calm": {"emotion": "calm"},
    "surprised": {"emotion": "surprised"},
    "speed0.8": {"speed": 0.8},
    "speed1.3": {"speed": 1.3},
}
# Targets from issue 22.
TARGETS = {"wideband": 0.03, "mulaw": 0.05}
# The noisy control: the wideband audio with white noise this far below it, which a working
# quality predictor scores clearly lower.
CONTROL_SNR_DB = 5.0


@dataclass
class Heard:
    text: str
    ser: float
    syllable_errors: int
    syllables: int
    char_errors: int
    chars: int
    heard: str
    differences: list[str]
    ovrl: float | None
    p808: float | None
    transcript: str = ""  # what the listener wrote; "heard" is it as compared (numbers read)


def _planned(text: str, settings) -> list[tuple[str, str, bool]]:
    """The front end's reading of `text`: (character, pinyin, whether a tone rule changed it)."""
    from shared import plan
    from shared.text import pinyin

    return [(syl.char, syl.pinyin, syl.source == pinyin.SANDHI)
            for segment in plan.segments(text, settings)
            for syl in pinyin.read(segment.text, segment.pinyin, segment.pinyin_from)]


def _spoken(pipeline, text: str, options, folder: str):
    """16 kHz mono float32 audio of `text` as a client would get it with these options."""
    import soundfile
    import soxr

    from worker.pipeline import speak

    path = f"{folder}/spoken.wav"
    speak(pipeline.engine, text, options, path, pipeline.settings)
    audio, rate = soundfile.read(path, dtype="float32")
    return soxr.resample(audio, rate, 16_000) if rate != 16_000 else audio


def _noisy(audio, snr_db: float, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    power = float(np.mean(audio ** 2)) or 1e-8
    return (audio + rng.standard_normal(len(audio)) * np.sqrt(power / 10 ** (snr_db / 10))).astype(np.float32)


def run(sentences: int | None = None, variants: list[str] | None = None, threads: int = 2,
        with_mos: bool = True, progress=None) -> dict:
    """The figures, as a dict (what --json writes): per variant the error rates and DNSMOS, the
    front end's misreadings, the noisy control, and each sentence's result."""
    import tempfile

    from shared.config import Settings
    from shared.options import SynthesisOptions
    from worker.engines import load_engine
    from worker.pipeline import Pipeline

    from voxq.bench import error_rates, listener, predictor
    from voxq.bench.corpus import quality_corpus

    variants = variants or list(VARIANTS)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise CliError(f"unknown variant(s) {', '.join(unknown)}; valid: {', '.join(VARIANTS)}")
    lines = quality_corpus()[:sentences]
    wanted = [error_rates.expected(text, reading) for text, reading in lines]
    settings = Settings.load()
    pipeline = Pipeline(load_engine(settings), settings)

    front_end = []
    for want in wanted:
        misread = error_rates.front_end_misreadings(want, _planned(want.text, settings))
        front_end.append({"text": want.text, "misreadings": misread})
    result = {
        "sentences": len(wanted), "syllables": sum(len(w.syllables) for w in wanted),
        "front_end": {
            "syllable_errors": sum(error_rates.count(f["misreadings"]) for f in front_end),
            "sentences": [f for f in front_end if f["misreadings"]],
        },
        "variants": {}, "control": None,
    }
    control = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="voxq-quality-") as folder:
        for variant in variants:
            options = SynthesisOptions(**VARIANTS[variant])
            pipeline.check(options)
            heard = []
            for n, want in enumerate(wanted):
                audio = _spoken(pipeline, want.text, options, folder)
                found = error_rates.score(want, listener.transcribe(audio, threads))
                scores = predictor.mos(audio) if with_mos else {"ovrl": None, "p808": None}
                if with_mos and variant == "wideband":
                    control.append(predictor.mos(_noisy(audio, CONTROL_SNR_DB, n)))
                heard.append(Heard(want.text, found.ser, found.syllable_errors, found.syllables,
                                   found.char_errors, found.chars, found.heard, found.differences,
                                   scores["ovrl"], scores["p808"], found.transcript))
                if progress:
                    progress(variant, n + 1, len(wanted))
            result["variants"][variant] = _summary(heard)
    if control:
        result["control"] = {"snr_db": CONTROL_SNR_DB, "ovrl": _mean([c["ovrl"] for c in control]),
                             "p808": _mean([c["p808"] for c in control])}
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _summary(heard: list[Heard]) -> dict:
    syllables = sum(h.syllables for h in heard)
    chars = sum(h.chars for h in heard)
    return {
        "ser": sum(h.syllable_errors for h in heard) / max(1, syllables),
        "cer": sum(h.char_errors for h in heard) / max(1, chars),
        "ovrl": _mean([h.ovrl for h in heard]),
        "p808": _mean([h.p808 for h in heard]),
        "sentences": [h.__dict__ for h in heard],
    }


def rescore(result: dict) -> dict:
    """An earlier run's figures scored again by today's rules, from what it heard: a change to the
    scoring then never passes for a change in the voice. A run from before the transcript was kept
    has only the normalised text, whose numerals are written as digits again (an approximation)."""
    from voxq.bench import error_rates
    from voxq.bench.corpus import quality_corpus

    wanted = {text: error_rates.expected(text, reading) for text, reading in quality_corpus()}
    for name, variant in result["variants"].items():
        heard = []
        for s in variant["sentences"]:
            if s["text"] in wanted:
                transcript = s.get("transcript") or error_rates.written_again(s["heard"])
                found = error_rates.score(wanted[s["text"]], transcript)
                s.update(heard=found.heard, ser=found.ser, syllable_errors=found.syllable_errors,
                         syllables=found.syllables, char_errors=found.char_errors, chars=found.chars,
                         differences=found.differences)
            heard.append(Heard(**s))
        result["variants"][name] = _summary(heard)
    return result


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _mos(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def report(result: dict, before: dict | None = None, worst: int = 10) -> str:
    """The figures as the command prints them; `before` (an earlier --json) beside each."""
    lines = [f"{result['sentences']} sentences, {result['syllables']} syllables "
             "(voxq/bench/quality_corpus.tsv); listener Whisper base int8; predictor DNSMOS"]
    fe = result["front_end"]
    line = (f"front end misreadings (no voice can fix): {fe['syllable_errors']} syllables, "
            f"{_pct(fe['syllable_errors'] / max(1, result['syllables']))}")
    if before:
        b = before["front_end"]["syllable_errors"]
        line += f"  (before: {b}, {_pct(b / max(1, before['syllables']))})"
    lines.append(line)
    head = f"{'variant':>10} {'SER tones':>10} {'CER':>8} {'DNSMOS':>7} {'P.808':>6}"
    if before:
        head += f"   {'SER before':>10} {'CER before':>10} {'DNSMOS before':>13}"
    lines.append(head)
    for name, v in result["variants"].items():
        row = f"{name:>10} {_pct(v['ser']):>10} {_pct(v['cer']):>8} {_mos(v['ovrl']):>7} {_mos(v['p808']):>6}"
        if before and name in before["variants"]:
            b = before["variants"][name]
            row += f"   {_pct(b['ser']):>10} {_pct(b['cer']):>10} {_mos(b['ovrl']):>13}"
        lines.append(row)
    if result["control"]:
        c = result["control"]
        lines.append(f"{'control':>10} {'':>10} {'':>8} {_mos(c['ovrl']):>7} {_mos(c['p808']):>6}"
                     f"   (wideband + white noise at {c['snr_db']:g} dB SNR: the predictor responds)")
    found = result["variants"]
    if all(name in found for name in ("wideband", "narrowband", "mulaw")):
        band = found["narrowband"]["ser"] - found["wideband"]["ser"]
        line = found["mulaw"]["ser"] - found["narrowband"]["ser"]
        lines.append(f"telephone path: the 8 kHz band limit {100 * band:+.1f} points, voxq's G.711 path on "
                     f"top of it (filter, level, mu-law) {100 * line:+.1f} points")
    if "wideband" in found and "wideband-1db" in found:
        spread = abs(found["wideband-1db"]["ser"] - found["wideband"]["ser"])
        lines.append(f"the listener's own spread (wideband against the same speech 1 dB quieter): "
                     f"{100 * spread:.1f} points; a smaller change is no change")
    for name, target in TARGETS.items():
        if name in result["variants"]:
            ser = result["variants"][name]["ser"]
            lines.append(f"target {name} SER <= {100 * target:g} %: {_pct(ser)}, "
                         f"{'met' if ser <= target else 'missed'}")
    first = next(iter(result["variants"]), None)
    if first:
        rows = sorted(result["variants"][first]["sentences"], key=lambda s: -s["ser"])[:worst]
        lines.append(f"\nsentences that differ most ({first}), to listen to:")
        for s in rows:
            if s["ser"] == 0:
                break
            lines.append(f"  {_pct(s['ser']):>7}  {s['text']}\n           heard {s.get('transcript') or s['heard']}\n"
                         f"           {'; '.join(s['differences'])}")
    if fe["sentences"]:
        lines.append("\nfront end misreadings:")
        for s in fe["sentences"]:
            lines.append(f"  {s['text']}  {'; '.join(s['misreadings'])}")
    lines.append(f"\n{result['seconds']:g} s")
    return "\n".join(lines)


def cmd_quality(args) -> int:
    import sys

    from voxq.bench.listener import ListenerError
    from voxq.bench.predictor import PredictorError

    variants = args.variants.split(",") if args.variants else None
    before = None
    if args.compare:
        try:
            with open(args.compare, encoding="utf-8") as handle:
                before = rescore(json.load(handle))
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read {args.compare}: {exc}") from None

    def progress(variant: str, done: int, total: int) -> None:
        if sys.stderr.isatty() or done == total:
            print(f"\r{variant}: {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)

    try:
        result = run(args.sentences, variants, args.threads, not args.no_mos, progress)
    except (ListenerError, PredictorError) as exc:
        raise CliError(str(exc)) from None
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, ensure_ascii=False, indent=1)
    print(report(result, before, args.worst))
    return 0


def add_parser(which) -> None:
    quality = which.add_parser("quality", help="how well the voice is understood: Whisper's error rates, DNSMOS")
    quality.add_argument("--sentences", type=int, help="only the corpus's first N sentences")
    quality.add_argument("--variants", help=f"comma-separated, of: {', '.join(VARIANTS)} (default: all)")
    quality.add_argument("--threads", type=int, default=2, help="Whisper's CPU threads")
    quality.add_argument("--no-mos", action="store_true", help="skip DNSMOS (faster)")
    quality.add_argument("--worst", type=int, default=10, help="how many of the worst sentences to list")
    quality.add_argument("--json", help="also write the figures, every sentence's included, to this file")
    quality.add_argument("--compare", help="an earlier --json: its figures printed beside these")
    quality.set_defaults(func=cmd_quality, quiet_native=True)
