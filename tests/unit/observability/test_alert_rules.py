"""The alert rules (charts/signalstack/charts/monitoring/files/rules/signalstack.rules.yaml):
a valid rule file (`promtool check rules`), unit-tested with `promtool test rules` (each alert
fires when it should and stays quiet when it should not), and every metric they read is one the
code exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from tests.unit.observability.metric_catalog import exported_series_names

from signalstack.devstack.paths import cache_dir, require

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "charts/signalstack/charts/monitoring/files/rules/signalstack.rules.yaml"
TESTS = Path(__file__).parent / "rules" / "signalstack.rules.test.yaml"
METRIC = re.compile(r"\b(signalstack_[a-z0-9_]+)")


@pytest.fixture(scope="module")
def promtool() -> Path:
    return require(cache_dir() / "prometheus" / "bin" / "promtool", "promtool")


def _alerts() -> dict[str, str]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"] if "alert" in r}


def test_the_rule_file_is_valid(promtool: Path) -> None:
    out = subprocess.run(
        [str(promtool), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_unit_tests_pass(promtool: Path) -> None:
    out = subprocess.run(
        [str(promtool), "test", "rules", TESTS.name],
        cwd=TESTS.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases = [
        case for t in yaml.safe_load(TESTS.read_text())["tests"] for case in t["alert_rule_test"]
    ]
    for alert in _alerts():
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"{alert}: no case where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{alert}: no case where it stays quiet"


def test_alerts_read_metrics_the_code_exports() -> None:
    exported = exported_series_names()
    for alert, expr in _alerts().items():
        for name in METRIC.findall(expr):
            assert name in exported, f"{alert} reads {name}, which no code exports"
