"""`voxq bench frontend`: characters per second the text front end plans, per input class, and with
`--polyphones` how often it reads a polyphone right (polyphones.txt), before and after."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


# The input classes the front end must plan in linear time (a reading rule that backtracks over a
# long run of one kind of character is quadratic in that run). Fixed seeds: the same text each run.
_PIECES = {
    "digits": "0123456789",
    "latin": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "symbols": "!@#$%^&*()-_=+[]{};:'\",.<>/?~`|\\ ",
    "mixed": ["12", "3.5", "-", "%", "km", "ab", "你好", "，", "。", "$", "/", ":", " ", "2024-03-15",
              "10:30", "@", "v1.2", "\n", "😀", "第3", "1,234"],
    # One run-on sentence: Chinese with no punctuation at all, one segment the splitter must cut.
    "run-on": "我们今天去公园玩了一个下午天气非常好大家都很开心",
}
FRONTEND_CLASSES = tuple(_PIECES)


def frontend_input(kind: str, chars: int, seed: int = 16) -> str:
    """`chars` characters of one input class (see _PIECES)."""
    import random

    rng = random.Random(seed)
    pieces = _PIECES[kind]
    out, size = [], 0
    while size < chars:
        piece = rng.choice(pieces)
        out.append(piece)
        size += len(piece)
    return "".join(out)[:chars]


def frontend_rate(kind: str, chars: int, settings=None) -> float:
    """Characters per second the front end plans (normalise, segment) of one input class."""
    from shared.config import Settings
    from shared import plan

    settings = settings or Settings.load()
    text = frontend_input(kind, chars)
    started = time.perf_counter()
    try:
        plan.segments(text, settings)
    except plan.PlanError:
        pass  # symbols alone say nothing: timed all the same
    return chars / (time.perf_counter() - started)


def cmd_frontend(args) -> int:
    if args.polyphones:
        return cmd_polyphones(args)
    from shared.config import Settings
    from shared import plan

    sizes = [int(s) for s in args.sizes.split(",")]
    settings = Settings.load(limits={"max_chars": max(sizes)})
    from shared.text.segmenter import words

    # Load jieba's dictionary and cn2an outside the timing: a worker has both loaded already.
    words("你好世界")
    plan.segments("你好，世界。123 abc", settings)
    print(f"front end (normalise + segment), characters per second; target >= {FRONTEND_TARGET:,} "
          f"in the worst class at 100k")
    print(f"{'class':>8} " + " ".join(f"{f'{n // 1000}k' if n >= 1000 else n:>10}" for n in sizes))
    worst = {}
    for kind in FRONTEND_CLASSES:
        rates = [frontend_rate(kind, n, settings) for n in sizes]
        worst[kind] = rates[-1]
        print(f"{kind:>8} " + " ".join(f"{rate:>10,.0f}" for rate in rates))
    slowest = min(worst, key=worst.get)
    print(f"worst at {sizes[-1]:,}: {slowest} {worst[slowest]:,.0f} chars/s")
    return 0


FRONTEND_TARGET = 50_000
POLYPHONE_TARGET = 0.97
# The front end before polyphones were read in context: jieba's words and pypinyin's phrase list.
BEFORE_COMMIT = "00060fa"
# A character followed by its reading in brackets: 银行[hang2].
_MARK = re.compile(r"\[([a-zü]+[1-5])\]")


@dataclass(frozen=True)
class PolyphoneCase:
    text: str  # the sentence, without the marks
    at: int  # where the polyphone sits in it
    reading: str  # what a Putonghua speaker says there, tone-numbered
    held_out: int  # 0, or which batch written after the rules were (1, 2, …), to see how they generalise

    @property
    def char(self) -> str:
        return self.text[self.at]


def polyphone_cases() -> list[PolyphoneCase]:
    """The hand-checked polyphone set (polyphones.txt beside this file), one case per marked character."""
    source = resources.files("voxq.bench").joinpath("polyphones.txt").read_text(encoding="utf-8")
    cases, held_out = [], 0
    for line in source.splitlines():
        line = line.strip()
        if line.startswith("# Held out"):
            held_out += 1
        if not line or line.startswith("#"):
            continue
        text, marks, pos = "", [], 0
        for m in _MARK.finditer(line):
            text += line[pos:m.start()]
            marks.append((len(text) - 1, m.group(1)))
            pos = m.end()
        text += line[pos:]
        cases += [PolyphoneCase(text, at, reading, held_out) for at, reading in marks]
    return cases


def right_reading(want: str, got: str, source: str) -> bool:
    """A reading is right as said: a third tone the sandhi rules turned second (了解 liao2 jie3) counts
    as the third tone the set gives."""
    return got == want or (want[-1] == "3" and source == "sandhi" and got == want[:-1] + "2")


def planned_readings(texts: list[str]) -> list[dict[int, tuple[str, str]]]:
    """Per text, {offset in the text: (pinyin, source)}: the front end's plan and preview, the readings
    the workers speak."""
    from shared.text import frontend

    found = []
    for text in texts:
        preview = frontend.preview(frontend.plan(text))
        found.append({c["start"]: (c["pinyin"], c["source"]) for s in preview["segments"] for c in s["chars"]})
    return found


def _child_run(request: dict) -> dict:
    """In a fresh process: load what `request` names, read its texts, time planning and reading run-on
    text. Loading pypinyin-dict's data changes pypinyin for the whole process, hence the process."""
    import resource

    started = time.perf_counter()
    from shared.text import frontend, pinyin

    frontend.preview(frontend.plan("你好，世界。"))  # jieba and pypinyin loaded, as in a worker
    for name in request["phrase_data"]:
        import importlib

        importlib.import_module(f"pypinyin_dict.phrase_pinyin_data.{name}").load()
    loaded = time.perf_counter() - started
    readings = [{str(k): v for k, v in r.items()} for r in planned_readings(request["texts"])]
    rate = 0.0
    for _ in range(3):  # the best of three: the machine's other load only ever slows a run down
        started = time.perf_counter()
        for segment in frontend.plan(request["speed_text"]):
            pinyin.read(segment.text, segment.pinyin, segment.pinyin_from)
        rate = max(rate, len(request["speed_text"]) / (time.perf_counter() - started))
    return {"readings": readings, "load_s": loaded, "chars_per_s": rate,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "shared": str(Path(sys.modules["shared"].__file__).parent.parent)}


def _in_child(root: str, request: dict) -> dict:
    code = ("import json,sys; from voxq.bench.frontend import _child_run; "
            "print(json.dumps(_child_run(json.load(sys.stdin))))")
    # Run from the root whose `shared` is measured: `python -c` puts its current directory first on the path.
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(request), capture_output=True,
                         text=True, check=False, cwd=root)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip()[-2000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if Path(result["shared"]).resolve() != Path(root).resolve():
        raise RuntimeError(f"measured the front end in {result['shared']}, not {root}")
    return result


def _score(cases: list[PolyphoneCase], readings: list[dict]) -> tuple[int, int, list[str]]:
    right, misses = 0, []
    for case, found in zip(cases, readings, strict=True):
        got, source = found.get(str(case.at), ("?", "?"))
        if right_reading(case.reading, got, source):
            right += 1
        else:
            misses.append(f"{case.text} {case.char}: {got}, not {case.reading}")
    return right, len(cases), misses


def cmd_polyphones(args) -> int:
    import importlib.util

    import shared

    cases = polyphone_cases()
    texts = [c.text for c in cases]
    request = {"texts": texts, "phrase_data": [], "speed_text": frontend_input("run-on", args.speed_chars)}
    now_root = str(Path(shared.__file__).resolve().parent.parent)
    configurations = [("now: context rules and phrase fixes", now_root, [])]
    if importlib.util.find_spec("pypinyin_dict"):
        configurations += [(f"now + pypinyin-dict {name}", now_root, [name]) for name in args.phrase_data.split(",")]
    with tempfile.TemporaryDirectory(prefix="voxq-frontend-") as before_root:
        archive = subprocess.run(f"git archive {BEFORE_COMMIT} shared | tar -x -C {before_root}", shell=True,
                                 cwd=now_root, capture_output=True, text=True, check=False)
        if archive.returncode == 0:
            configurations.insert(0, (f"before ({BEFORE_COMMIT}): jieba + pypinyin", before_root, []))
        else:
            print(f"before ({BEFORE_COMMIT}): not measured, no git checkout here ({archive.stderr.strip()})")
        batches = sorted({c.held_out for c in cases} - {0})
        held = {b: [i for i, c in enumerate(cases) if c.held_out == b] for b in batches}
        print(f"polyphone accuracy on {len(cases)} readings of {len(set(texts))} sentences, "
              f"{len({c.char for c in cases})} characters ({', '.join(str(len(held[b])) for b in batches)} "
              f"held out, by batch); target >= {POLYPHONE_TARGET:.0%}")
        print(f"{'configuration':<42} {'all':>7}" + "".join(f" {f'held out {b}':>11}" for b in batches)
              + f" {'load s':>7} {'RSS MB':>7} {'chars/s':>9}")
        for name, root, phrase_data in configurations:
            result = _in_child(root, {**request, "phrase_data": phrase_data})
            right, total, misses = _score(cases, result["readings"])
            row = f"{name:<42} {right / total:>7.1%}"
            for b in batches:
                held_right, held_total, _ = _score([cases[i] for i in held[b]], [result["readings"][i] for i in held[b]])
                row += f" {held_right / max(1, held_total):>11.1%}"
            print(row + f" {result['load_s']:>7.1f} {result['rss_mb']:>7.0f} {result['chars_per_s']:>9,.0f}")
            for miss in misses if args.misses else ():
                print(f"    {miss}")
    print(f"chars/s: plan + per-character pinyin of {args.speed_chars:,} run-on characters (the worst class), "
          f"best of 3; RSS: the process's peak; load s: importing and loading the front end and phrase data")
    return 0


def add_parser(which) -> None:
    frontend = which.add_parser("frontend", help="characters per second of the text front end, per input class")
    frontend.add_argument("--sizes", default="1000,10000,100000", help="comma-separated input sizes")
    frontend.add_argument("--polyphones", action="store_true",
                          help="polyphone accuracy on the hand-checked set, before and after, instead of speed")
    frontend.add_argument("--misses", action="store_true", help="with --polyphones: each misread case")
    frontend.add_argument("--phrase-data", default="large_pinyin,cc_cedict",
                          help="with --polyphones, where pypinyin-dict is installed: its phrase sets to try")
    frontend.add_argument("--speed-chars", type=int, default=20_000,
                          help="with --polyphones: run-on characters timed for plan + pinyin")
    frontend.set_defaults(func=cmd_frontend)
