"""The local stream engine: watermark, lateness → DLQ, dedup, emit-once, and equality with the
batch library on the trades it accepted."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from signalstack.engines.base import ListSink
from signalstack.engines.local import LocalEngine
from signalstack.engines.ticks import in_batches, seeded_ticks
from signalstack.features import bars_and_features

LATENESS_MS = 5_000


def expected_late(batches: list[pd.DataFrame]) -> list[np.ndarray]:
    """Independent restatement of the semantics: W(b) = max ms of batches < b − lateness."""
    out, wm, mx = [], 0, None
    for b in batches:
        ts = b["ts_event"].to_numpy()
        out.append(ts < wm * 1_000_000)
        bm = int(ts.max()) // 1_000_000
        mx = bm if mx is None else max(mx, bm)
        wm = max(wm, mx - LATENESS_MS)
    return out


@pytest.fixture(scope="module")
def ticks() -> pd.DataFrame:
    return seeded_ticks(seed=11, minutes=45, trades_per_minute=40)


def run_engine(batches: list[pd.DataFrame], flush: bool = True) -> tuple[LocalEngine, ListSink]:
    sink = ListSink()
    eng = LocalEngine(sink, lateness=dt.timedelta(milliseconds=LATENESS_MS))
    for b in batches:
        eng.process(b)
    if flush:
        eng.flush()
    return eng, sink


@pytest.mark.parametrize("batch_size", [500, 3000])
def test_engine_equals_batch_library_on_accepted_trades(ticks, batch_size):
    batches = in_batches(ticks, batch_size)
    late = expected_late(batches)
    eng, sink = run_engine(batches)
    accepted = pd.concat([b[~m] for b, m in zip(batches, late, strict=True)], ignore_index=True)
    bars, feats = bars_and_features(accepted)
    n_late = int(sum(m.sum() for m in late))
    assert n_late > 0  # the data must exercise lateness
    assert eng.stats.late == n_late == len(sink.dlq)
    assert {r.reason for r in sink.dlq} == {"late"}
    assert eng.stats.duplicates > 0
    pd.testing.assert_frame_equal(sink.all_bars(), bars, check_exact=False, rtol=1e-12)
    pd.testing.assert_frame_equal(sink.all_features(), feats, check_exact=False, rtol=1e-12)


def test_each_bar_is_emitted_once_and_only_after_the_watermark(ticks):
    sink = ListSink()
    eng = LocalEngine(sink, lateness=dt.timedelta(milliseconds=LATENESS_MS))
    for b in in_batches(ticks, 700):
        n_before = len(sink.bars)
        eng.process(b)
        for frame in sink.bars[n_before:]:
            assert (frame["ts"].astype("int64") <= eng.watermark.ns).all()
    bars = sink.all_bars()
    assert not bars.duplicated(["symbol", "ts"]).any()
    feats = sink.all_features()
    assert not feats.duplicated(["symbol", "ts"]).any()
    assert len(bars) == len(feats)


def _t(minute: int, second: float, price: float, tid: str, seq: int) -> dict:
    ts = pd.Timestamp("2024-03-05 09:30", tz="America/New_York").value
    return {
        "symbol": "AAA",
        "ts_event": ts + minute * 60_000_000_000 + int(second * 1e9),
        "price": price,
        "size": 100.0,
        "exchange": 4,
        "trade_id": tid,
        "sequence": seq,
        "conditions": [],
    }


def test_late_within_allowance_updates_its_bar_later_goes_to_dlq():
    sink = ListSink()
    eng = LocalEngine(sink, lateness=dt.timedelta(seconds=10))
    eng.process(pd.DataFrame([_t(0, 5, 10.0, "a", 1), _t(1, 5, 11.0, "b", 2)]))
    # watermark = 09:31:05 − 10 s = 09:30:55: the 09:30 bar is still open
    assert sink.all_bars().empty
    eng.process(pd.DataFrame([_t(0, 58, 12.0, "c", 3)]))  # on time (≥ W): updates 09:30 bar
    eng.process(pd.DataFrame([_t(3, 0, 13.0, "d", 4)]))  # moves W to 09:32:50
    eng.process(pd.DataFrame([_t(0, 59, 99.0, "e", 5), _t(1, 6, 98.0, "b", 2)]))  # late: DLQ
    bars = sink.all_bars()
    first = bars.iloc[0]
    assert (first["open"], first["close"], first["high"], first["volume"]) == (
        10.0,
        12.0,
        12.0,
        200.0,
    )
    assert bars.iloc[1]["close"] == 11.0 and bars.iloc[1]["volume"] == 100.0
    assert [r.reason for r in sink.dlq] == ["late", "late"]
    assert '"trade_id":"e"' in sink.dlq[0].payload
    assert eng.stats.late == 2


def test_duplicate_arriving_in_a_later_batch_is_dropped():
    sink = ListSink()
    eng = LocalEngine(sink, lateness=dt.timedelta(seconds=30))
    eng.process(pd.DataFrame([_t(0, 5, 10.0, "a", 1)]))
    eng.process(pd.DataFrame([_t(0, 5, 50.0, "a", 1), _t(0, 6, 11.0, "b", 2)]))
    eng.flush()
    bar = sink.all_bars().iloc[0]
    assert (bar["open"], bar["high"], bar["volume"], bar["trade_count"]) == (10.0, 11.0, 200.0, 2)
    assert eng.stats.duplicates == 1


def test_empty_batches_and_out_of_session_trades_emit_nothing():
    sink = ListSink()
    eng = LocalEngine(sink)
    eng.process(
        pd.DataFrame(
            columns=[
                "symbol",
                "ts_event",
                "price",
                "size",
                "exchange",
                "trade_id",
                "sequence",
                "conditions",
            ]
        )
    )
    pre = _t(0, 0, 10.0, "p", 1)
    pre["ts_event"] -= 3_600_000_000_000
    eng.process(pd.DataFrame([pre]))
    eng.flush()
    assert sink.all_bars().empty and eng.stats.out_of_session == 1
