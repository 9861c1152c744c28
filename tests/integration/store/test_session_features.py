"""``Store.session_features`` on both stores (DuckDB and real TimescaleDB): the newest N rows
of the symbol's latest session at or before as_of, oldest first — never a row of an earlier
session, of another symbol or feature set, or stamped after as_of. What the inference API
reads to predict a symbol (the LSTM's sequence)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signalstack.features.columns import FEATURE_COLUMNS
from signalstack.store import Store
from signalstack.store.base import StoreError
from signalstack.store.duckdb import DuckDBStore
from signalstack.store.timescale import TimescaleStore

DAY1 = pd.Timestamp("2024-03-04 14:30", tz="UTC")  # 09:30 New York
DAY2 = pd.Timestamp("2024-03-05 14:30", tz="UTC")


@pytest.fixture(
    params=[pytest.param("duckdb"), pytest.param("timescale", marks=pytest.mark.integration)]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s: Store
    if request.param == "duckdb":
        s = DuckDBStore(str(tmp_path / "store.duckdb"))
    else:
        s = TimescaleStore(request.getfixturevalue("timescale_db").dsn)
    s.migrate()
    try:
        yield s
    finally:
        s.close()


def rows(
    symbol: str, start: pd.Timestamp, minutes: int, fsv: int = 1, base: float = 0.0
) -> pd.DataFrame:
    ts = [start + pd.Timedelta(minutes=m + 1) for m in range(minutes)]
    df = pd.DataFrame({"symbol": symbol, "ts": pd.to_datetime(ts, utc=True)})
    for i, c in enumerate(FEATURE_COLUMNS):
        df[c] = base + np.arange(minutes, dtype=float) + i / 100
    df["realized_vol_15m"] = np.nan  # NULLs come back as NaN
    df["feature_set_version"] = fsv
    return df


def test_the_latest_session_tail_point_in_time(store: Store) -> None:
    store.write_features(
        pd.concat([
            rows("AAA", DAY1, 30, base=1000.0),
            rows("AAA", DAY2, 12),
            rows("AAA", DAY2, 20, fsv=2, base=5000.0),
            rows("BBB", DAY2, 25, base=9000.0),
        ], ignore_index=True)
    )  # fmt: skip
    got = store.session_features("AAA", 5)
    assert list(got.columns) == ["symbol", "ts", *FEATURE_COLUMNS, "feature_set_version"]
    assert list(got["ts"]) == [DAY2 + pd.Timedelta(minutes=m) for m in range(8, 13)]
    assert got["vwap_5m"].tolist() == [7.0, 8.0, 9.0, 10.0, 11.0]  # oldest first, AAA, set 1
    assert got["realized_vol_15m"].isna().all()
    assert set(got["feature_set_version"]) == {1}

    # never back into the previous session, even when asked for more rows than it has
    got = store.session_features("AAA", 50)
    assert len(got) == 12 and got["ts"].iloc[0] == DAY2 + pd.Timedelta(minutes=1)

    # point in time: a cut between rows reads the rows before it; a cut before the session's
    # first row falls back to the previous session
    cut = DAY2 + pd.Timedelta(minutes=6, seconds=30)
    got = store.session_features("AAA", 3, as_of=cut)
    assert list(got["ts"]) == [DAY2 + pd.Timedelta(minutes=m) for m in (4, 5, 6)]
    got = store.session_features("AAA", 3, as_of=DAY2)
    assert list(got["ts"]) == [DAY1 + pd.Timedelta(minutes=m) for m in (28, 29, 30)]
    assert got["vwap_5m"].tolist() == [1027.0, 1028.0, 1029.0]

    one = store.session_features("AAA", 1)
    assert len(one) == 1 and one["ts"].iloc[0] == DAY2 + pd.Timedelta(minutes=12)
    assert store.session_features("AAA", 4, feature_set_version=2)["vwap_5m"].iloc[-1] == 5019.0
    assert store.session_features("ZZZ", 5).empty
    assert store.session_features("AAA", 5, as_of=DAY1).empty
    with pytest.raises(StoreError, match="limit must be at least 1"):
        store.session_features("AAA", 0)
