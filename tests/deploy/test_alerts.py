"""The alert rules, checked and unit-tested by Prometheus's own promtool (alerts_test.yaml)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "alerts.yaml"


def promtool(*args: str) -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed: run `make test`, which installs Debian's prometheus")
    result = subprocess.run([binary, *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_rules_are_valid():
    assert "SUCCESS" in promtool("check", "rules", str(RULES))


def test_each_alert_fires_and_stays_quiet_in_the_unit_tests():
    promtool("test", "rules", str(Path(__file__).with_name("alerts_test.yaml")))
    # Every alert in the file is exercised by the unit tests, firing at least once.
    tests = Path(__file__).with_name("alerts_test.yaml").read_text()
    yaml = pytest.importorskip("yaml")
    names = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    cases = [case for test in yaml.safe_load(tests)["tests"] for case in test["alert_rule_test"]]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert names == fired == quiet
