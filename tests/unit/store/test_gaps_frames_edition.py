"""Pure parts of the store: calendar gaps, frame preparation, edition statement choice."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from signalstack.features.columns import FEATURE_COLUMNS
from signalstack.store.base import SchemaMismatchError
from signalstack.store.edition import APACHE, COMMUNITY, statements_for
from signalstack.store.frames import (
    prepare_bars,
    prepare_features,
    prepare_predictions,
    prepare_trades,
)
from signalstack.store.gaps import missing_minutes, missing_sessions, session_bounds, sessions
from signalstack.store.migrations import yoyo_url
from signalstack.store.synthetic import synthetic_trades


def test_sessions_skip_weekends_and_holidays() -> None:
    got = sessions(dt.date(2024, 3, 27), dt.date(2024, 4, 2))
    assert got == [
        dt.date(2024, 3, 27),
        dt.date(2024, 3, 28),
        dt.date(2024, 4, 1),
        dt.date(2024, 4, 2),
    ]


def test_half_day_bounds_and_extended_hours() -> None:
    o, c = session_bounds(dt.date(2024, 11, 29))  # day after Thanksgiving closes at 13:00 ET
    assert (o, c) == (pd.Timestamp("2024-11-29 14:30Z"), pd.Timestamp("2024-11-29 18:00Z"))
    o, c = session_bounds(dt.date(2024, 7, 1), extended_hours=True)
    assert (o, c) == (pd.Timestamp("2024-07-01 08:00Z"), pd.Timestamp("2024-07-02 00:00Z"))
    # Extended hours end four hours after the close, as the engine's session index has them.
    o, c = session_bounds(dt.date(2024, 11, 29), extended_hours=True)
    assert (o, c) == (pd.Timestamp("2024-11-29 09:00Z"), pd.Timestamp("2024-11-29 22:00Z"))


def test_missing_sessions_and_minutes() -> None:
    cov = pd.DataFrame({"symbol": ["AAPL"], "session": [dt.date(2024, 3, 28)], "rows": [10]})
    got = missing_sessions(cov, ["AAPL"], dt.date(2024, 3, 28), dt.date(2024, 4, 1))
    assert got.to_numpy().tolist() == [["AAPL", dt.date(2024, 4, 1)]]
    o = pd.Timestamp("2024-03-28 13:30Z")
    have = pd.Series([o + pd.Timedelta(minutes=1), o + pd.Timedelta(minutes=3)])
    miss = missing_minutes(have, o, o + pd.Timedelta(minutes=4))
    assert miss == [o + pd.Timedelta(minutes=2), o + pd.Timedelta(minutes=4)]


def test_prepare_trades_splits_constraint_violations() -> None:
    df = synthetic_trades(6, seed=1)
    df.loc[0, "price"] = 0.0
    df.loc[2, "size"] = -1.0
    df.loc[3, "exchange"] = 40_000
    df.loc[4, "trade_id"] = None
    typed, rejects = prepare_trades(df)
    assert len(typed) == 2
    assert sorted(r.reason for r in rejects) == [
        "exchange_out_of_range",
        "not_null_violation",
        "trades_price_positive",
        "trades_size_positive",
    ]
    assert all(r.payload.startswith("{") for r in rejects)


def test_a_feature_row_without_a_version_gets_the_default_in_any_batch() -> None:
    ts = pd.Timestamp("2024-03-05 15:00Z")
    row = {"symbol": "A", "ts": ts, **dict.fromkeys(FEATURE_COLUMNS, 1.0)}
    alone = prepare_features(pd.DataFrame([row]))
    other = {**row, "symbol": "B", "feature_set_version": 2}
    mixed = prepare_features(pd.DataFrame([row, other]))  # the version column is NaN for A
    assert alone["feature_set_version"].tolist() == [1]
    assert mixed["feature_set_version"].tolist() == [1, 2]
    assert str(mixed["feature_set_version"].dtype) == "int64"


def test_typed_frames_of_every_backend_are_accepted_as_before() -> None:
    """The type checks refuse wrong values, not other representations of right ones: Arrow-
    backed columns, numpy integers in object columns, nullable integers."""
    ts = pd.Timestamp("2024-03-05 15:00:00+00:00")
    df = pd.DataFrame(
        {"symbol": ["A", "B"], "ts": [ts, ts], **{c: [1.0, None] for c in FEATURE_COLUMNS}}
    )
    df["feature_set_version"] = [1, 2]
    arrow = prepare_features(df.convert_dtypes(dtype_backend="pyarrow"))
    pd.testing.assert_frame_equal(arrow, prepare_features(df))
    assert arrow["feature_set_version"].tolist() == [1, 2]
    nullable = prepare_features(df.assign(feature_set_version=pd.array([1, None], "Int64")))
    assert nullable["feature_set_version"].tolist() == [1, 1]  # NULL version: the default
    preds = pd.DataFrame(
        {
            "symbol": ["A", "A", "A"],
            "ts": [ts, ts, ts],
            "model_name": "m",
            "model_version": pd.Series([np.int64(1), 2, "x"], dtype=object),
            "value": 0.5,
        }
    )
    assert prepare_predictions(preds)["model_version"].tolist() == ["1", "2", "x"]
    with pytest.raises(ValueError, match="model_version must be"):
        prepare_predictions(preds.assign(model_version=pd.Series([True] * 3, dtype=object)))
    with pytest.raises(ValueError, match="symbol must be a non-empty string"):
        prepare_features(df.assign(symbol=["", "A"]))
    with pytest.raises(ValueError, match="symbol contains NUL"):
        prepare_features(df.assign(symbol=["A\x00", "A"]))  # not merged into "A" by DuckDB


def test_prepare_requires_columns_and_dedups_bars() -> None:
    with pytest.raises(SchemaMismatchError, match="price"):
        prepare_trades(pd.DataFrame({"symbol": ["A"]}))
    ts = pd.Timestamp("2024-03-05 15:00Z")
    bars = pd.DataFrame(
        {
            "symbol": ["A", "A"],
            "ts": [ts, ts],
            "open": [1.0, 2.0],
            "high": 1.0,
            "low": 1.0,
            "close": 1.0,
            "volume": 1.0,
            "vwap": 1.0,
            "trade_count": 1,
        }
    )
    assert prepare_bars(bars)["open"].tolist() == [2.0]  # last one wins, as a later write would


def test_edition_choice_and_yoyo_url() -> None:
    assert statements_for("timescale") is COMMUNITY
    assert statements_for("apache") is APACHE
    assert all("timescaledb.continuous" not in s for s in APACHE)
    assert yoyo_url("postgresql://u:p@h:5/db") == "postgresql+psycopg://u:p@h:5/db"
