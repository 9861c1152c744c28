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

    # The report's figures are what the embedded store holds for the demo's session (the
    # training history, earlier sessions, joins the store after them).
    lo = f"{report['session']} 00:00:00+00"
    hi = f"{report['session']} 23:59:59+00"
    window = "WHERE ts BETWEEN CAST(? AS TIMESTAMPTZ) AND CAST(? AS TIMESTAMPTZ)"
    con = duckdb.connect(str(out / "signalstack.duckdb"), read_only=True)
    try:
        bars = con.execute(
            f"SELECT count(*), count(DISTINCT symbol) FROM ohlcv_1m {window}", [lo, hi]
        ).fetchone()
        feats = con.execute(f"SELECT count(*) FROM features {window}", [lo, hi]).fetchone()
        before = con.execute("SELECT count(*) FROM ohlcv_1m WHERE ts < CAST(? AS TIMESTAMPTZ)",
                             [lo]).fetchone()  # fmt: skip
    finally:
        con.close()
    assert bars == (report["engine"]["bars_out"], 3)
    assert feats == (report["engine"]["features_out"],)
    assert report["store_rows"]["ohlcv_1m"] == bars[0]
    assert report["store_rows"]["features"] == feats[0]
    assert report["store_rows"]["dlq"] == report["engine"]["late"]
    assert before is not None and before[0] >= 3 * 370 * len(report["training"]["history_days"])
    # A regular session has 390 minutes; every symbol trades in nearly all of them.
    assert 3 * 370 <= bars[0] <= 3 * 390

    # Training: three models beside their baselines, each with the gate's decision, in a local
    # MLflow store the report names (a registered version per model; the alias on a promotion).
    training = report["training"]
    assert set(training["models"]) == {"regime", "direction", "anomaly"}
    for name, m in training["models"].items():
        assert m["metric"] in m["holdout"], name
        assert m["baselines_holdout"], name
        assert m["decision"]["reason"], name
    assert (out / "training.png").stat().st_size > 10_000
    assert "## Training" in (out / "report.md").read_text()
    from mlflow import MlflowClient

    client = MlflowClient(training["tracking_uri"], training["tracking_uri"])
    for name, m in training["models"].items():
        rm = client.get_registered_model(name)
        promoted = m["decision"]["promote"]
        assert (str(rm.aliases.get("champion")) == m["version"]) == promoted, (name, rm.aliases)

    # Serving: the API on localhost answered each model by symbol, and OIP v2 agreed.
    calls = report["serving"]["calls"]
    for name in ("regime", "direction", "anomaly"):
        c = calls[f"POST /predict/{name}"]
        assert c["answer"]["model_name"] == name and c["answer"]["feature_set_version"] == 1
        assert c["p50_ms"] > 0
    assert calls["POST /predict/regime"]["answer"]["prediction"] in ("calm", "trending", "volatile")
    assert calls["POST /v2/models/regime/infer"]["max_abs_diff_from_predict"] < 1e-9
    assert "## Serving" in (out / "report.md").read_text()

    # Live: the local engine's rows reached the API through its feature log, and every served
    # model's prediction of each row came over the WebSocket and into the predictions table.
    live = report["serving"]["websocket"]
    assert live["subscribed"]["symbols"] == ["*"] and live["feature_rows"] > 0
    assert live["predictions"] == live["expected"] == 3 * live["feature_rows"]
    assert live["by_model"] == dict.fromkeys(("anomaly", "direction", "regime"),
                                             live["feature_rows"])  # fmt: skip
    assert live["latency_ms"]["p50"] > 0
    assert live["example"]["ts_iso"].startswith(live["session"])
    con = duckdb.connect(str(out / "signalstack.duckdb"), read_only=True)
    try:
        stored = con.execute(
            "SELECT count(*) FROM predictions WHERE CAST(ts AT TIME ZONE 'America/New_York' "
            "AS DATE) = CAST(? AS DATE)",
            [live["session"]],
        ).fetchone()
    finally:
        con.close()
    assert stored == (live["predictions"],)
    assert "WS /ws/predictions" in (out / "report.md").read_text()
