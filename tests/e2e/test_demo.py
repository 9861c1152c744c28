"""`signalstack demo` runs the embedded pipeline end to end and its report agrees with the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.slow


def test_demo_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STORE_", "MARKET_"))}
    res = subprocess.run(
        [sys.executable, "-m", "signalstack", "demo", "--out", str(out), "--seed", "11",
         "--trades-per-day", "20000"],
        env={**env, "MARKET_SYMBOLS": "AAPL,MSFT,NVDA"},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["symbols"] == ["AAPL", "MSFT", "NVDA"]
    assert report["engine"]["trades_in"] == report["trades_simulated"]
    # The simulator labels the duplicate prints it injected; the engine drops exactly those.
    assert report["engine"]["duplicates"] == report["labelled_duplicates"] > 0
    assert (out / "report.md").read_text().startswith("# SignalStack demo report")
    assert (out / "features.png").stat().st_size > 10_000

    # The report's figures are what the embedded store holds.
    con = duckdb.connect(str(out / "signalstack.duckdb"), read_only=True)
    try:
        bars = con.execute("SELECT count(*), count(DISTINCT symbol) FROM ohlcv_1m").fetchone()
        feats = con.execute("SELECT count(*) FROM features").fetchone()
        dlq = con.execute("SELECT count(*) FROM dlq").fetchone()
    finally:
        con.close()
    assert bars == (report["engine"]["bars_out"], 3)
    assert feats == (report["engine"]["features_out"],)
    assert report["store_rows"] == {"ohlcv_1m": bars[0], "features": feats[0], "dlq": dlq[0]}
    # A regular session has 390 minutes; every symbol trades in nearly all of them.
    assert 3 * 370 <= bars[0] <= 3 * 390
