"""One contract suite, run against both Store implementations (DuckDB and real TimescaleDB)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalstack.store import FEATURE_COLUMNS, BackfillRun, Store
from signalstack.store.base import NUL_ESCAPE, DlqRecord
from signalstack.store.duckdb import DuckDBStore
from signalstack.store.synthetic import synthetic_trades
from signalstack.store.timescale import TimescaleStore

T0 = pd.Timestamp("2024-03-05 15:00:00+00:00")


@pytest.fixture(
    params=[pytest.param("duckdb"), pytest.param("timescale", marks=pytest.mark.integration)]
)
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:
    s: Store
    if request.param == "duckdb":
        s = DuckDBStore(str(tmp_path / "store.duckdb"))
    else:
        s = TimescaleStore(request.getfixturevalue("timescale_db").dsn)
    assert s.migrate() != []
    try:
        yield s
    finally:
        s.close()


def bars_frame(symbol: str, ends: list[pd.Timestamp], base: float = 100.0) -> pd.DataFrame:
    n = len(ends)
    close = base + np.arange(n, dtype=float)
    return pd.DataFrame(
        {
            "symbol": symbol,
            "ts": pd.DatetimeIndex(ends),
            "open": close - 0.5,
            "high": close + 1,
            "low": close - 1,
            "close": close,
            "volume": np.full(n, 1000.0),
            "vwap": close - 0.1,
            "trade_count": np.arange(1, n + 1),
        }
    )


def features_frame(symbol: str, ts: list[pd.Timestamp], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"symbol": symbol, "ts": pd.DatetimeIndex(ts)})
    for c in FEATURE_COLUMNS:
        df[c] = rng.normal(size=len(ts))
    df.loc[df.index[::3], "price_momentum_5m"] = np.nan  # NULLs survive the round trip
    df["feature_set_version"] = 1
    return df


def test_migrate_is_idempotent(store: Store) -> None:
    assert store.migrate() == []


def test_trades_round_trip_exact_and_idempotent(store: Store) -> None:
    df = synthetic_trades(2_000, seed=1)
    assert store.write_trades(df) == 2_000
    assert store.write_trades(df) == 0
    assert store.write_trades(pd.concat([df.iloc[:10], df.iloc[:10]])) == 0
    assert store.count("trades") == 2_000
    got = store.trades(["AAPL", "MSFT", "NVDA", "AMZN", "TSLA", "SPY"], 0, 2**62)
    want = df.sort_values(["symbol", "ts_event", "sequence"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=True)


def test_trades_range_is_half_open_in_nanoseconds(store: Store) -> None:
    df = synthetic_trades(3, seed=2, symbols=("AAPL",))
    df["ts_event"] = [T0.value, T0.value + 1, T0.value + 999]
    store.write_trades(df)
    got = store.trades(["AAPL"], T0.value + 1, T0.value + 999)
    assert got["ts_event"].tolist() == [T0.value + 1]


def test_bad_trades_go_to_dlq_with_reason(store: Store) -> None:
    df = synthetic_trades(5, seed=3)
    df.loc[1, "price"] = -1.0
    df.loc[3, "size"] = 0.0
    assert store.write_trades(df) == 3
    dlq = store.dlq()
    assert sorted(dlq["reason"]) == ["trades_price_positive", "trades_size_positive"]
    assert dlq["payload"].str.contains('"price":-1.0').any()


def test_dlq_keeps_records_with_nul_the_same_way_on_every_store(store: Store) -> None:
    """PostgreSQL text cannot hold NUL; a rejected binary value must still reach the DLQ."""
    rec = DlqRecord(
        source="market.trades", reason="bad_json", payload="\x00\x00\x07avro", key="A\x00"
    )
    assert store.write_dlq([rec]) == 1
    got = store.dlq()
    assert got["payload"].tolist() == [f"{NUL_ESCAPE}{NUL_ESCAPE}\x07avro"]
    assert got["key"].tolist() == [f"A{NUL_ESCAPE}"]


def test_a_replayed_reject_is_written_once(store: Store) -> None:
    """A sink that crashed before committing replays its rejects: each lands once. Two
    messages with equal bytes are two rejects (their origins differ); a refused row with no
    origin is the same reject whenever its content is."""
    at = [f"kafka:market.trades:0:{o}" for o in (7, 8)]
    first = [
        DlqRecord(source="market.trades", reason="bad_json", payload="{x", origin=at[0]),
        DlqRecord(source="market.trades", reason="bad_json", payload="{x", origin=at[1]),
        DlqRecord(source="store.trades", reason="trades_price_positive", payload='{"p":-1}'),
    ]
    assert store.write_dlq(first) == 3
    replay = [
        DlqRecord(source="market.trades", reason="bad_json", payload="{x", origin=at[1]),
        DlqRecord(source="market.trades", reason="bad_json", payload="{x", origin=at[0]),
        DlqRecord(source="store.trades", reason="trades_price_positive", payload='{"p":-1}'),
        # the same message rejected by another consumer is that consumer's reject
        DlqRecord(source="stream.spark", reason="bad_json", payload="{x", origin=at[0]),
    ]
    assert store.write_dlq(replay) == 1
    assert store.write_dlq(replay + replay) == 0  # duplicates within one call, too
    assert sorted(store.dlq()["source"]) == [
        "market.trades",
        "market.trades",
        "store.trades",
        "stream.spark",
    ]


def test_text_with_nul_is_refused_on_every_store_and_every_path(store: Store) -> None:
    """PostgreSQL text cannot hold NUL, and numpy's byte strings drop a trailing one: a trade id
    "t\x00" must not be stored as "t" (merging into trade "t"). Large frames take the binary
    COPY path, small ones the text path; both refuse it the same way as DuckDB."""
    for n in (200, 2_000):
        df = synthetic_trades(n, seed=n, id_prefix=f"n{n}-")
        twin = df.iloc[[0]].assign(trade_id=df["trade_id"].iloc[0] + "\x00")
        sym = df.iloc[[1]].assign(symbol="AA\x00")
        assert store.write_trades(pd.concat([df, twin, sym], ignore_index=True)) == n
    dlq = store.dlq()
    assert dlq["reason"].tolist() == ["text_has_nul"] * 4
    assert dlq["payload"].str.contains(NUL_ESCAPE, regex=False).all()
    assert store.count("trades") == 2_200


def test_keys_one_nanosecond_apart_are_one_row(store: Store) -> None:
    """Both stores keep key times to the microsecond: two rows of one batch 1 ns apart are the
    same row (the last wins), not an error that would stop the sink on every replay."""
    ts = [T0 + pd.Timedelta(1, "ns"), T0 + pd.Timedelta(2, "ns")]
    df = features_frame("AAPL", ts)
    assert store.write_features(df) == 1
    got = store.training_frame(["AAPL"], T0, T0 + pd.Timedelta(minutes=1), as_of=T0)
    assert got["ts"].tolist() == [T0]
    assert got["vwap_5m"].tolist() == [df["vwap_5m"].iloc[1]]
    pred = {"symbol": "AAPL", "model_name": "m", "model_version": "1", "value": 0.5}
    preds = pd.DataFrame([{**pred, "ts": t} for t in ts])
    assert store.write_predictions(preds) == 1
    assert store.count("predictions") == 1


@pytest.mark.parametrize(
    ("table", "row"),
    [
        ("features", {"symbol": None}),
        ("features", {"symbol": ["AAPL"]}),
        ("features", {"feature_set_version": [1]}),
        ("features", {"vwap_5m": "abc"}),
        ("features", {"symbol": "AA\x00"}),
        ("predictions", {"symbol": ["AAPL"]}),
        ("predictions", {"feature_set_version": None}),
        ("predictions", {"model_version": None}),
        ("predictions", {"value": {"x": 1}}),
    ],
)
def test_a_value_of_the_wrong_type_is_a_refused_row(store: Store, table: str, row: dict) -> None:
    """Not stored as "None" or NULL, and not a TypeError (which the sink takes for a database
    failure and stops on): a row error naming the column, which the sink bisects to the DLQ."""
    if table == "features":
        base = features_frame("AAPL", [T0]).iloc[0].to_dict()
        write = store.write_features
    else:
        base = {"symbol": "AAPL", "ts": T0, "model_name": "m", "model_version": "1", "value": 1.0}
        base["feature_set_version"] = 1
        write = store.write_predictions
    df = pd.DataFrame([{**base, **row}])
    with pytest.raises(ValueError, match=next(iter(row))) as err:
        write(df)
    assert store.is_row_error(err.value), repr(err.value)
    assert store.count(table) == 0


def test_bars_upsert_and_half_open_range(store: Store) -> None:
    ends = [T0 + pd.Timedelta(minutes=i) for i in range(1, 6)]
    assert store.write_bars(bars_frame("AAPL", ends)) == 5
    changed = bars_frame("AAPL", ends[:2], base=200.0)
    store.write_bars(changed)
    got = store.bars(["AAPL"], ends[0], ends[4])
    assert got["ts"].tolist() == ends[:4]
    assert got["close"].tolist() == [200.0, 201.0, 102.0, 103.0]
    assert store.count("ohlcv_1m") == 5
    assert str(got["ts"].dtype) == "datetime64[ns, UTC]"
    assert got["trade_count"].dtype == np.int64


def test_training_frame_is_point_in_time(store: Store) -> None:
    ts = [T0 + pd.Timedelta(minutes=i) for i in range(10)]
    feats = features_frame("MSFT", ts)
    assert store.write_features(feats) == 10
    as_of = ts[6]
    got = store.training_frame(["MSFT"], ts[0], ts[-1] + pd.Timedelta(minutes=1), as_of)
    assert got["ts"].max() == as_of
    want = feats.iloc[:7].reset_index(drop=True)
    want["ts"] = want["ts"].astype("datetime64[ns, UTC]")
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert got["price_momentum_5m"].isna().sum() == 3


def test_latest_features_per_symbol(store: Store) -> None:
    ts = [T0 + pd.Timedelta(minutes=i) for i in range(5)]
    store.write_features(features_frame("AAPL", ts, seed=1))
    store.write_features(features_frame("NVDA", ts[:2], seed=2))
    latest = store.latest_features(["AAPL", "NVDA", "ZZZZ"])
    assert latest["symbol"].tolist() == ["AAPL", "NVDA"]
    assert latest["ts"].tolist() == [ts[4], ts[1]]
    cut = store.latest_features(["AAPL"], as_of=ts[2] + pd.Timedelta(seconds=30))
    assert cut["ts"].tolist() == [ts[2]]
    assert store.latest_features(["AAPL"], feature_set_version=2).empty


def test_features_rewrite_replaces(store: Store) -> None:
    ts = [T0 + pd.Timedelta(minutes=i) for i in range(3)]
    store.write_features(features_frame("SPY", ts, seed=1))
    new = features_frame("SPY", ts, seed=9)
    store.write_features(new)
    got = store.training_frame(["SPY"], ts[0], ts[-1] + pd.Timedelta(minutes=1), ts[-1])
    np.testing.assert_allclose(got["vwap_5m"], new["vwap_5m"])
    assert store.count("features") == 3


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n_before=st.integers(0, 6),
    n_after=st.integers(1, 6),
    as_of_offset_s=st.integers(0, 59),
    values=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=4),
)
def test_rows_after_as_of_never_change_the_frame(
    store: Store, n_before: int, n_after: int, as_of_offset_s: int, values: list[float]
) -> None:
    symbol = f"P{uuid.uuid4().hex[:6].upper()}"
    before = [T0 + pd.Timedelta(minutes=i) for i in range(n_before + 1)]
    as_of = before[-1] + pd.Timedelta(seconds=as_of_offset_s)
    store.write_features(features_frame(symbol, before))
    start, end = T0 - pd.Timedelta(days=1), T0 + pd.Timedelta(days=1)
    frame = store.training_frame([symbol], start, end, as_of)
    latest = store.latest_features([symbol], as_of=as_of)
    # Rows knowable only after as_of: new timestamps, arbitrary values.
    later = [
        as_of.ceil("min") + pd.Timedelta(minutes=i + (as_of.second == 0)) for i in range(n_after)
    ]
    extra = features_frame(symbol, later)
    for i, v in enumerate(values):
        extra.loc[extra.index[i % len(extra)], FEATURE_COLUMNS[i % len(FEATURE_COLUMNS)]] = v
    assert (extra["ts"] > as_of).all()
    store.write_features(extra)
    pd.testing.assert_frame_equal(store.training_frame([symbol], start, end, as_of), frame)
    pd.testing.assert_frame_equal(store.latest_features([symbol], as_of=as_of), latest)
    assert len(frame) == n_before + 1


def test_predictions_anomalies_drift_and_registry(store: Store) -> None:
    ts = [T0 + pd.Timedelta(minutes=i) for i in range(3)]
    preds = pd.DataFrame(
        {
            "symbol": "AAPL",
            "ts": ts,
            "model_name": "direction",
            "model_version": "3",
            "value": [0.1, 0.7, np.nan],
            "label": ["down", "up", None],
        }
    )
    assert store.write_predictions(preds) == 3
    assert store.write_predictions(preds) == 3  # upsert: rewritten, not duplicated
    got = store.predictions(["AAPL"], ts[0], ts[-1] + pd.Timedelta(minutes=1))
    assert len(got) == 3 and got["label"].tolist() == ["down", "up", None]
    assert np.isnan(got["value"].iloc[2])
    anomalies = pd.DataFrame(
        {
            "symbol": "AAPL",
            "ts": ts,
            "model_version": "1",
            "score": [0.1, 0.9, 0.2],
            "is_anomaly": [False, True, False],
        }
    )
    assert store.write_anomalies(anomalies) == 3
    drift = pd.DataFrame(
        {
            "feature": ["vwap_5m", "volume_5m"],
            "window_start": ts[0],
            "window_end": ts[2],
            "psi": [0.01, 0.3],
        }
    )
    store.write_drift(drift)
    store.write_drift(drift)
    assert store.count("drift") == 2
    store.record_model("direction", "3", "champion", "run-1", {"auc": 0.61})
    store.record_model("direction", "4", "champion", "run-2", {"auc": 0.63})
    run = BackfillRun(
        "r1", "yfinance", ("AAPL",), dt.date(2024, 3, 4), dt.date(2024, 3, 5), "running"
    )
    store.record_backfill_run(run)
    store.record_backfill_run(
        BackfillRun(
            "r1",
            "yfinance",
            ("AAPL",),
            dt.date(2024, 3, 4),
            dt.date(2024, 3, 5),
            "ok",
            rows=10,
            started_at=run.started_at,
            finished_at=dt.datetime.now(dt.UTC),
        )
    )


def test_gap_queries_follow_the_trading_calendar(store: Store) -> None:
    # 2024-03-28 (Thu) and 2024-04-01 (Mon) are sessions; 2024-03-29 is Good Friday (closed).
    thu = pd.Timestamp("2024-03-28 13:31:00+00:00")
    mon = pd.Timestamp("2024-04-01 13:31:00+00:00")
    store.write_bars(bars_frame("AAPL", [thu, thu + pd.Timedelta(minutes=2)]))
    cov = store.coverage(["AAPL"], dt.date(2024, 3, 27), dt.date(2024, 4, 2), "bars")
    assert cov["session"].tolist() == [dt.date(2024, 3, 28)]
    assert cov["rows"].tolist() == [2]
    missing = store.missing_sessions(["AAPL", "MSFT"], dt.date(2024, 3, 28), dt.date(2024, 4, 1))
    assert set(map(tuple, missing.to_numpy().tolist())) == {
        ("AAPL", dt.date(2024, 4, 1)),
        ("MSFT", dt.date(2024, 3, 28)),
        ("MSFT", dt.date(2024, 4, 1)),
    }
    minutes = store.missing_minutes("AAPL", dt.date(2024, 3, 28))
    assert len(minutes) == 390 - 2
    assert thu + pd.Timedelta(minutes=1) in minutes and thu not in minutes
    df = synthetic_trades(4, seed=5, symbols=("AAPL",), start=mon, span_s=60)
    store.write_trades(df)
    tcov = store.coverage(["AAPL"], dt.date(2024, 3, 28), dt.date(2024, 4, 1), "trades")
    assert tcov["session"].tolist() == [dt.date(2024, 4, 1)] and tcov["rows"].tolist() == [4]
