"""The market simulator: reproducible, and it has the properties the models rely on."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from signalstack.marketdata.conditions import load_bundled_conditions
from signalstack.marketdata.simulator import (
    ANOMALY_KINDS,
    NS_PER_MIN,
    REGIMES,
    SimConfig,
    simulate,
)
from signalstack.schemas.trade import validate_trade

SYMS = ("AAPL", "MSFT", "NVDA", "SPY")


@pytest.fixture(scope="module")
def market():
    return simulate(SimConfig(seed=3, symbols=SYMS, trades_per_day=40_000, anomalies_per_day=4))


def test_same_seed_same_market_other_seed_differs(market) -> None:
    again = simulate(SimConfig(seed=3, symbols=SYMS, trades_per_day=40_000, anomalies_per_day=4))
    for col in (
        "ts_event",
        "arrival",
        "price",
        "size",
        "exchange",
        "trade_id",
        "cond_pattern",
        "sym",
    ):
        assert np.array_equal(getattr(market, col), getattr(again, col)), col
    other = simulate(SimConfig(seed=4, symbols=SYMS, trades_per_day=40_000, anomalies_per_day=4))
    assert not np.array_equal(market.price[:1000], other.price[:1000])


def test_every_symbol_trades_about_the_configured_amount(market) -> None:
    counts = np.bincount(market.sym, minlength=len(SYMS))
    assert ((counts > 30_000) & (counts < 55_000)).all(), counts


def test_intraday_volume_is_u_shaped(market) -> None:
    minute = (market.ts_event - market.session_open_ns) // NS_PER_MIN
    per_min = np.bincount(minute[(minute >= 0) & (minute < 390)], minlength=390)
    open_, mid, close = per_min[:30].mean(), per_min[150:240].mean(), per_min[-30:].mean()
    assert open_ > 1.5 * mid and close > 1.5 * mid


def test_regimes_are_labelled_and_volatile_minutes_move_more(market) -> None:
    f = market.to_frame()
    seen = set(f["regime"])
    assert seen == set(REGIMES)
    rf = market.regime_frame()
    assert len(rf) == 390 * len(SYMS)
    # absolute 1-minute log returns by regime (mid-session minutes, same symbols)
    f = f[~f["is_late"] & ~f["is_duplicate"] & (f["anomaly"] == "")]
    f = f.assign(minute=(f["ts_event"] - market.session_open_ns) // NS_PER_MIN)
    f = f[(f["minute"] >= 60) & (f["minute"] < 330)]
    bars = (
        f.sort_values("ts_event")
        .groupby(["symbol", "minute"])
        .agg(c=("price", "last"), regime=("regime", "first"))
    )
    bars["r"] = np.log(bars["c"]).groupby(level=0).diff().abs()
    by = bars.groupby("regime")["r"].median()
    assert by["volatile"] > 1.5 * by["calm"]


def test_sizes_heavy_tailed_with_odd_lots_and_conditions_from_the_table(market) -> None:
    table = load_bundled_conditions()
    conds = market.conditions()
    size = market.size
    odd = size < 100
    assert 0.25 < odd.mean() < 0.45
    assert all(37 in conds[k] for k in np.flatnonzero(odd)[:2000])
    assert np.percentile(size, 99.9) > 20 * np.median(size)  # a fat tail
    codes = {c for cs in market.patterns for c in cs}
    assert codes <= table.ids and {14, 37, 15, 16, 33} <= codes


def test_late_prints_arrive_out_of_order_and_are_flagged(market) -> None:
    late = market.is_late
    assert late.sum() > 50
    delay = market.arrival[late] - market.ts_event[late]
    assert (delay > 1e9).mean() > 0.9 and (delay <= 300e9).all()
    conds = market.conditions()
    assert all(33 in conds[k] for k in np.flatnonzero(late))
    # delivery order is arrival order, so ts_event goes backwards at late prints
    assert (np.diff(market.arrival) >= 0).all()
    assert (np.diff(market.ts_event) < -1e9).sum() >= late.sum() * 0.9


def test_duplicates_repeat_an_identity_later(market) -> None:
    ids = list(
        zip(market.sym.tolist(), market.exchange.tolist(), market.trade_id.tolist(), strict=True)
    )
    dup = np.flatnonzero(market.is_duplicate)
    assert len(dup) > 20
    first = {}
    for k, ident in enumerate(ids):
        first.setdefault(ident, k)
    assert all(first[ids[k]] < k for k in dup)
    assert len(set(ids)) == len(ids) - len(dup)


def test_anomalies_are_labelled_and_visible(market) -> None:
    kinds = {a["kind"] for a in market.anomalies}
    assert kinds == set(ANOMALY_KINDS)
    f = market.to_frame()
    for a in market.anomalies:
        sel = f["anomaly"] == a["kind"]
        win = f[
            (f["symbol"] == a["symbol"])
            & (f["ts_event"] >= a["start_ns"])
            & (f["ts_event"] < a["end_ns"])
        ]
        assert (win["anomaly"] == a["kind"]).any(), a
        assert sel.any()
    spikes = [a for a in market.anomalies if a["kind"] == "spike"]
    for a in spikes:
        row = f[
            (f["symbol"] == a["symbol"])
            & (f["ts_event"] == a["start_ns"])
            & (f["anomaly"] == "spike")
        ].iloc[0]
        nb = f[
            (f["symbol"] == a["symbol"])
            & (abs(f["ts_event"] - a["start_ns"]) < 30e9)
            & (f["anomaly"] == "")
        ]
        assert abs(row["price"] / nb["price"].median() - 1) > 0.025


def test_outputs_are_valid_trade_events_and_polygon_frames(market) -> None:
    rows = list(market.events())
    assert len(rows) == len(market)
    for r in rows[:5000]:
        validate_trade(r)
    assert np.allclose(np.round(market.price, 2), market.price)
    frames = list(market.ws_frames(batch=300))
    evs = [e for fr in frames for e in orjson.loads(fr)]
    assert len(evs) == len(market)
    e0 = evs[0]
    assert e0["ev"] == "T" and set(e0) >= {"sym", "x", "i", "z", "p", "s", "t", "q"}
    assert e0["t"] == market.ts_event[0] // 1_000_000 and isinstance(e0["i"], str)
    rest = market.rest_results(np.arange(3))
    assert rest[0]["sip_timestamp"] == market.ts_event[0]


def test_extended_hours_prints_are_form_t() -> None:
    m = simulate(SimConfig(seed=1, symbols=("AAPL",), trades_per_day=5_000, extended_hours=True))
    outside = (m.ts_event < m.session_open_ns) | (
        m.ts_event >= m.session_open_ns + 390 * NS_PER_MIN + 10**7
    )
    conds = m.conditions()
    assert outside.sum() > 10
    assert all(12 in conds[k] for k in np.flatnonzero(outside))


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "ws"])
def test_simulate_entry_point_writes_trades_and_labels(tmp_path, fmt) -> None:
    import json

    import pandas as pd

    from signalstack.config import MarketSettings, Settings
    from signalstack.marketdata.simulator import run

    s = Settings(market=MarketSettings(symbols=("AAPL", "MSFT")))
    out, labels = run(s, seed=9, out=tmp_path / f"day.{fmt}", fmt=fmt, trades_per_day=1_000)
    lab = json.loads(labels.read_text())
    assert lab["symbols"] == ["AAPL", "MSFT"] and set(lab["regimes"]) == {"AAPL", "MSFT"}
    expect = len(simulate(SimConfig(seed=9, symbols=("AAPL", "MSFT"), trades_per_day=1_000)))
    if fmt == "parquet":
        df = pd.read_parquet(out)
        assert len(df) == expect and {"symbol", "ts_event", "regime", "anomaly"} <= set(df.columns)
    elif fmt == "jsonl":
        rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
        assert len(rows) == expect
        validate_trade(rows[0])
    else:
        n = sum(len(orjson.loads(line)) for line in out.read_bytes().splitlines())
        assert n == expect
