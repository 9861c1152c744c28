"""The embedded store's ohlcv_5m: a vendor minute without a vwap adds volume, not a zero price."""

from __future__ import annotations

import pandas as pd
import pytest

from signalstack.store.duckdb import DuckDBStore

T0 = pd.Timestamp("2025-11-20 14:31:00+00:00")


def _bars(vwaps: list[float | None], source: str) -> pd.DataFrame:
    n = len(vwaps)
    return pd.DataFrame(
        {
            "ts": [T0 + pd.Timedelta(minutes=i) for i in range(n)],
            "symbol": "AAPL",
            "open": 10.0,
            "high": 11.0,
            "low": 9.0,
            "close": 10.5,
            "volume": [100.0 * (i + 1) for i in range(n)],
            "vwap": vwaps,
            "trade_count": [None] * n if source == "yfinance" else list(range(1, n + 1)),
            "source": source,
        }
    )


def test_a_vendor_minute_without_vwap_is_left_out_of_the_rollup_vwap() -> None:
    store = DuckDBStore()
    try:
        store.migrate()
        trades = _bars([10.0, 10.2, None, 10.4, 10.6], "trades")
        store.write_bars(trades.drop(index=2).drop(columns="source"))
        store.write_vendor_bars(_bars([10.0, 10.2, None, 10.4, 10.6], "yfinance").iloc[[2]])
        rows = store._con.execute(  # the view has no reader of its own
            "SELECT ts, volume, vwap FROM ohlcv_5m WHERE symbol = 'AAPL'"
        ).fetchall()
    finally:
        store.close()
    assert len(rows) == 1
    _, volume, vwap = rows[0]
    priced = trades.drop(index=2)
    assert volume == pytest.approx(1500.0)  # every minute's volume, the vendor's included
    expected = float((priced["vwap"] * priced["volume"]).sum() / priced["volume"].sum())
    assert vwap == pytest.approx(expected)
    assert vwap > float((priced["vwap"] * priced["volume"]).sum() / volume)  # the old formula
