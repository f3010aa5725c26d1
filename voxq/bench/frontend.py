"""`voxq bench frontend`: characters per second the text front end plans, per input class."""
from __future__ import annotations

import time


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


def add_parser(which) -> None:
    frontend = which.add_parser("frontend", help="characters per second of the text front end, per input class")
    frontend.add_argument("--sizes", default="1000,10000,100000", help="comma-separated input sizes")
    frontend.set_defaults(func=cmd_frontend)
