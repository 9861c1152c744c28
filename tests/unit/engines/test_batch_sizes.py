"""Streaming batch sizes: with nothing late, the local engine's rows, duplicates and counts are
the same whether a day arrives in batches of 1, 100, 1,000 or all at once — the fast paths of
small batches (dedup against the pending identities, an emission from the bounded history)
change no value."""

from __future__ import annotations

import datetime as dt
import itertools

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalstack.engines import core
from signalstack.engines.base import ListSink
from signalstack.engines.local import LocalEngine
from signalstack.engines.ticks import in_batches, seeded_ticks, to_arrow
from signalstack.features import bars_and_features

LATENESS = dt.timedelta(seconds=5)  # > jitter + re-send delay of the ticks: nothing is late
NS_MIN = 60_000_000_000


def _sparse(ticks: pd.DataFrame) -> pd.DataFrame:
    """A thin symbol with 10-minute gaps: windows find nothing, momentum reaches far back and
    the 20 bars of volume_ratio span most of the session."""
    minute = (ticks["ts_event"] - ticks["ts_event"].min()) // NS_MIN
    thin = ticks[(minute // 10) % 3 != 1].copy()
    thin["symbol"] = "THIN"
    return thin


@pytest.fixture(scope="module")
def day() -> pd.DataFrame:
    """Two sessions (the history moves to the new one) of three busy symbols and a thin one,
    in arrival order, with duplicates, odd lots, excluded conditions and pre-market prints."""
    parts = []
    for k, session in enumerate(("2024-03-05", "2024-03-06")):
        busy = seeded_ticks(
            seed=31 + k, session=session, minutes=70, trades_per_minute=12, late_frac=0.0
        )
        thin = seeded_ticks(
            seed=41 + k, symbols=("ZZZ",), session=session, minutes=150, trades_per_minute=1,
            late_frac=0.0, premarket=0,
        )  # fmt: skip
        for part in (busy, _sparse(thin)):
            part["trade_id"] = f"d{k}" + part["trade_id"]  # ids repeat across seeded days
            parts.append(part)
    df = pd.concat(parts, ignore_index=True)
    return df.sort_values("ts_ingest", kind="stable").reset_index(drop=True)


def _run(batches: list) -> tuple[LocalEngine, ListSink]:
    sink = ListSink()
    eng = LocalEngine(sink, lateness=LATENESS)
    for b in batches:
        eng.process(b)
    eng.flush()
    return eng, sink


@pytest.fixture(scope="module")
def whole(day: pd.DataFrame) -> tuple[LocalEngine, ListSink]:
    return _run([to_arrow(day)])


@pytest.mark.parametrize("size", [1, 100, 1000])
def test_rows_and_counts_do_not_depend_on_the_batch_size(day, whole, size):
    eng0, sink0 = whole
    eng, sink = _run([to_arrow(b) for b in in_batches(day, size)])
    assert eng.stats.late == 0 and eng0.stats.duplicates > 0
    for key in ("trades_in", "duplicates", "out_of_session", "bars_out", "features_out"):
        assert getattr(eng.stats, key) == getattr(eng0.stats, key), key
    assert eng.stats.batches == -(-len(day) // size)
    pd.testing.assert_frame_equal(sink.all_bars(), sink0.all_bars(), check_exact=True)
    pd.testing.assert_frame_equal(sink.all_features(), sink0.all_features(), check_exact=True)


def test_one_batch_equals_the_batch_library(day, whole):
    _, sink = whole
    bars, feats = bars_and_features(day)
    assert set(bars["symbol"]) == {"AAPL", "MSFT", "SPY", "THIN"}
    pd.testing.assert_frame_equal(sink.all_bars(), bars, check_exact=False, rtol=1e-12)
    pd.testing.assert_frame_equal(sink.all_features(), feats, check_exact=False, rtol=1e-12)


def test_history_stays_bounded_over_a_long_session():
    """Each emission computes features over the history kept per symbol: it must hold what the
    windows reach (15 minutes, the 20 bars before, the bar 5 minutes back), not the session."""
    ticks = seeded_ticks(seed=3, minutes=390, trades_per_minute=6, late_frac=0.0)
    eng, sink = _run([to_arrow(b) for b in in_batches(ticks, 200)])
    n_sym = ticks["symbol"].nunique()
    assert len(sink.all_bars()) > 300 * n_sym
    assert len(eng.machine.history) <= 40 * n_sym


OPEN = pd.Timestamp("2024-03-05 09:30", tz="America/New_York").value
CODES = [[], [], [], [37], [14], [2], [10], [15], [38], [12]]

trade_st = st.tuples(
    st.integers(0, 4_000),  # ms after the previous trade (arrival = event order)
    st.floats(10.0, 20.0, allow_nan=False),
    st.integers(1, 500),
    st.sampled_from(range(len(CODES))),
    st.sampled_from(["AAA", "BBB"]),
    st.integers(0, 3),  # 0: re-send (a duplicate of) an earlier trade of the last 4 s
    st.booleans(),  # a long trade id (17+ bytes: ids of mixed widths across batches)
)


def _frame(trades: list[tuple[int, float, int, int, str, int, bool]]) -> pd.DataFrame:
    rows: list[dict] = []
    ts = OPEN
    for i, (gap_ms, price, size, code, sym, resend, long_id) in enumerate(trades):
        ts += gap_ms * 1_000_000
        recent = [r for r in rows if r["ts_event"] > ts - 4_000_000_000]
        if resend == 0 and recent:
            rows.append({**recent[0], "price": round(price, 2)})
            continue
        rows.append(
            {
                "symbol": sym,
                "ts_event": ts,
                "price": round(price, 2),
                "size": float(size),
                "exchange": 4,
                "trade_id": ("L" * 17 if long_id else "t") + str(i),
                "sequence": i,
                "conditions": list(CODES[code]),
            }
        )
    return pd.DataFrame(rows)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    trades=st.lists(trade_st, min_size=1, max_size=250),
    cuts=st.lists(st.integers(0, 250), max_size=30),
)
def test_any_split_into_batches_gives_the_rows_of_one_batch(trades, cuts):
    df = _frame(trades)
    bounds = sorted({0, len(df), *(c for c in cuts if c < len(df))})
    batches = [df.iloc[a:b].reset_index(drop=True) for a, b in itertools.pairwise(bounds)]
    eng1, one = _run([df])
    eng, many = _run([to_arrow(b) for b in batches])
    assert eng.stats.late == 0
    assert eng.stats.duplicates == eng1.stats.duplicates
    pd.testing.assert_frame_equal(many.all_bars(), one.all_bars(), check_exact=True)
    pd.testing.assert_frame_equal(many.all_features(), one.all_features(), check_exact=True)


def test_a_batch_that_finalizes_nothing_computes_no_features_and_copies_no_pending(
    monkeypatch,
):
    """The fixed cost of a streaming batch: one that finalizes nothing (most) must not run the
    feature computation nor gather the pending trades (dedup reads their identities only)."""
    calls = {"features": 0, "pending": 0}
    real_features = core.feature_frame
    real_concat, real_take = core.Pending.concat, core.Pending.take

    def count(key, fn):
        def wrapped(*args, **kwargs):
            calls[key] += 1
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(core, "feature_frame", count("features", real_features))
    monkeypatch.setattr(core.Pending, "concat", staticmethod(count("pending", real_concat)))
    monkeypatch.setattr(core.Pending, "take", count("pending", real_take))
    busy = seeded_ticks(seed=8, minutes=20, trades_per_minute=200)  # 100 rows: ~10 s
    sink = ListSink()
    eng = LocalEngine(sink, lateness=LATENESS)
    quiet = 0
    for b in in_batches(busy, 100):
        before, written = dict(calls), len(sink.bars)
        eng.process(to_arrow(b))
        if len(sink.bars) == written:  # nothing final in this batch
            quiet += 1
            assert calls == before
    assert quiet > len(busy) // 100 // 2  # most batches finalize nothing
