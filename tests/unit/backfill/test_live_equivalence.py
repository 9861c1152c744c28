"""Backfilled trades give the same bars and features as the same trades arriving live.

Live: the simulated feed in delivery order (duplicates included) through the local stream
engine, micro-batch by micro-batch, into one store. Backfill: the same day from the fake
Polygon server's REST API into an empty store. The engine's output must be equal.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from signalstack.backfill.run import BackfillOptions, BackfillRunner
from signalstack.engines.local import LocalEngine
from signalstack.marketdata.fake_polygon import FakePolygonServer
from signalstack.marketdata.simulator import SimConfig, simulate
from signalstack.store.duckdb import DuckDBStore

from .conftest import DAY, SYMBOLS, client_factory

ET = "America/New_York"
LO = pd.Timestamp(DAY).tz_localize(ET).tz_convert("UTC")
HI = LO + pd.Timedelta(days=1)


def test_backfill_bars_and_features_equal_the_live_streams(
    fake_history: Callable[..., FakePolygonServer], tmp_path
) -> None:
    # no late prints: live, a print later than the watermark goes to the DLQ, while history
    # has it in place; everything else (duplicates, arrival jitter, batching) stays
    market = simulate(
        SimConfig(seed=21, symbols=SYMBOLS, date=DAY, trades_per_day=4_000, late_frac=0.0)
    )
    live_store = DuckDBStore(str(tmp_path / "live.duckdb"))
    back_store = DuckDBStore(str(tmp_path / "backfill.duckdb"))
    try:
        live_store.migrate()
        back_store.migrate()
        feed = market.to_frame(labels=False)
        assert market.is_duplicate.any()
        engine = LocalEngine(
            live_store, source=(feed.iloc[i : i + 250] for i in range(0, len(feed), 250))
        )
        stats = engine.run()
        assert stats.late == 0 and stats.duplicates > 0

        srv = fake_history(market)
        opts = BackfillOptions(SYMBOLS, DAY, DAY, detect_gaps=True, page_limit=1_000)
        result = BackfillRunner(back_store, client_factory(srv)).start(opts)
        assert result.status == "ok"

        live_bars = live_store.bars(list(SYMBOLS), LO, HI)
        assert len(live_bars) > 300 * len(SYMBOLS)
        pd.testing.assert_frame_equal(back_store.bars(list(SYMBOLS), LO, HI), live_bars)
        pd.testing.assert_frame_equal(
            back_store.training_frame(list(SYMBOLS), LO, HI, HI),
            live_store.training_frame(list(SYMBOLS), LO, HI, HI),
        )
    finally:
        live_store.close()
        back_store.close()
