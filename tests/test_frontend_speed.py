"""The text front end plans in time linear in its input, on every input class, and a cancel stops it."""
from __future__ import annotations

import time

import pytest

from shared.config import Settings
from shared.text import frontend
from shared.text.segmenter import words
from shared import plan
from voxq.bench.frontend import FRONTEND_CLASSES, frontend_input, frontend_rate

CHARS = 100_000


@pytest.fixture(scope="module")
def big_settings():
    settings = Settings.load(limits={"max_chars": CHARS})
    words("你好世界")  # jieba's dictionary loads once per process, not inside a timing
    plan.segments("你好，世界。123 abc", settings)
    return settings


@pytest.mark.parametrize("kind", FRONTEND_CLASSES)
def test_each_input_class_plans_in_linear_time(kind, big_settings):
    # The bench's target is 50,000 chars/s on an idle core; a quadratic rule is orders of magnitude
    # below even this shared-CI floor at 100k (20,000 digits used to take 64 s).
    rate = frontend_rate(kind, CHARS, big_settings)
    assert rate > 20_000, f"{kind}: {rate:,.0f} chars/s at {CHARS:,}"


def test_classes_are_what_they_say():
    assert set(frontend_input("digits", 1000)) <= set("0123456789")
    assert len(frontend_input("mixed", 5000)) == 5000
    run_on = frontend_input("run-on", 5000)
    assert not set(run_on) & set("，。！？；：、,.!?;:\n")


def test_a_cancel_stops_planning_a_long_text(big_settings):
    text = frontend_input("mixed", CHARS)
    asked = []

    def canceled() -> bool:
        asked.append(time.monotonic())
        return True

    started = time.monotonic()
    with pytest.raises(plan.Canceled):
        plan.segments(text, big_settings, should_stop=canceled)
    # It asks a quarter-second into planning (not before: a short text never pays a Redis read)
    # and stops at once; planning the whole text takes seconds.
    assert len(asked) == 1
    assert time.monotonic() - started < 1.5


def test_planning_not_canceled_is_unchanged(big_settings):
    text = frontend_input("mixed", 20_000)
    assert frontend.plan(text, should_stop=lambda: False, check_every_s=0) == frontend.plan(text)
