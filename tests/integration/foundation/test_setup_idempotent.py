"""`make setup` is idempotent: run again on an installed tree it re-uses every cache."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]


def test_second_setup_run_reuses_the_cache() -> None:
    t0 = time.monotonic()
    res = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    elapsed = time.monotonic() - t0
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stderr
    for step in ("python", "kafka", "spark", "timescaledb", "prometheus", "k8s-tools"):
        assert f"{step} ready" in log
    # Nothing is fetched, built or bootstrapped again: every step found its stamp.
    for work in (
        "resolving",
        "debootstrap",
        "restoring",
        "fetching",
        "go install",
        "bootstrapping",
    ):
        assert work not in log, log
    assert elapsed < 120, f"set-up took {elapsed:.0f} s on an installed tree"
