"""``run(settings, engine="local", source=...)``: the embedded default writes bars and features
into the configured store (DuckDB here) — the same rows as the batch library."""

from __future__ import annotations

import pandas as pd

from signalstack.config import Settings, StoreSettings
from signalstack.engines.run import run
from signalstack.engines.ticks import in_batches, seeded_ticks
from signalstack.features import bars_and_features
from signalstack.store import open_store


def test_embedded_run_writes_bars_and_features_to_the_store(tmp_path):
    ticks = seeded_ticks(seed=3, minutes=20, trades_per_minute=20, late_frac=0.0)
    settings = Settings(store=StoreSettings(type="duckdb", duckdb_path=str(tmp_path / "s.duckdb")))
    stats = run(settings, "local", source=in_batches(ticks, 500))
    exp_bars, exp_feats = bars_and_features(ticks)
    assert stats.bars_out == len(exp_bars) > 0
    with open_store(settings) as store:
        bars = store.bars(["AAPL", "MSFT", "SPY"], "2024-03-05", "2024-03-06")
        feats = store.training_frame(
            ["AAPL", "MSFT", "SPY"], "2024-03-05", "2024-03-06", "2024-03-06"
        )
    pd.testing.assert_frame_equal(
        bars.reset_index(drop=True)[exp_bars.columns], exp_bars, check_dtype=False, rtol=1e-9
    )
    pd.testing.assert_frame_equal(
        feats.reset_index(drop=True)[exp_feats.columns], exp_feats, check_dtype=False, rtol=1e-9
    )
