"""Hand-checked golden test: every bar field and all ten features worked out by hand below.

Session 2024-03-05 (XNYS, EST: 09:30 ET = 14:30 UTC). Symbol AAA:
- 09:29:59 a pre-market print (out of session: no bar, no window);
- minutes 09:30 … 09:49 (k = 0 … 19): one regular trade each, price 100 + k, size 100
  → bars ending 09:31 … 09:50 with O = H = L = C = 100 + k, volume 100;
- minute 09:50: only an odd lot (37) 121 × 50 → no bar, but volume and VWAP count it;
- minute 09:51 (bar ending 09:52): regular, ISO, odd-lot, average-price, derivatively-priced,
  official-close prints, an open/close tie broken by sequence, out-of-order arrival and a
  corrupted duplicate;
- minute 09:52 (bar ending 09:53): one print exactly at 09:52:00.000000000.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from signalstack.features import BAR_COLUMNS, FEATURE_FRAME_COLUMNS, bars_and_features
from signalstack.features.sessions import session_index

DAY = "2024-03-05"


def et(hms: str) -> int:
    """ns since epoch of an America/New_York wall time on DAY."""
    return pd.Timestamp(f"{DAY} {hms}", tz="America/New_York").value


def trade(hms: str, price: float, size: float, conds: list[int], tid: str, seq: int) -> dict:
    return {
        "symbol": "AAA",
        "ts_event": et(hms),
        "price": price,
        "size": size,
        "exchange": 4,
        "trade_id": tid,
        "sequence": seq,
        "conditions": conds,
        "tape": 3,
        "source": "sim",
        "ts_ingest": et(hms) + 1_000,
    }


def golden_trades() -> pd.DataFrame:
    rows = [trade("09:29:59", 50.0, 1000, [], "pre", 1)]
    rows += [trade(f"09:{30 + k}:10", 100.0 + k, 100, [], f"f{k}", 10 + k) for k in range(20)]
    rows.append(trade("09:50:30", 121.0, 50, [37], "odd0", 999))
    # minute 09:51, in a scrambled arrival order
    rows += [
        trade("09:51:05", 120.0, 200, [], "a", 1001),
        trade("09:51:59.999999999", 121.0, 100, [], "g", 1007),  # last by time → close
        trade("09:51:20", 122.0, 100, [14], "b", 1002),  # intermarket sweep: regular
        trade("09:51:30", 130.0, 10, [37], "c", 1003),  # odd lot: volume + VWAP only
        trade("09:51:40", 90.0, 500, [2], "d", 1004),  # average price: volume only
        trade("09:51:45", 125.0, 300, [10], "e", 1005),  # derivatively priced: HL + volume
        trade("09:51:50", 119.0, 1000, [15], "f", 1006),  # official close: nothing
        trade("09:51:20", 500.0, 100, [14], "b", 1002),  # duplicate of b (first seen wins)
        trade("09:51:05", 119.5, 100, [], "j", 1000),  # same ts as a, lower sequence → open
        trade("09:52:00", 123.0, 100, [], "i", 1008),  # exactly on the boundary → next bar
    ]
    return pd.DataFrame(rows)


def ts(hms: str) -> pd.Timestamp:
    return pd.Timestamp(f"{DAY} {hms}", tz="America/New_York").tz_convert("UTC")


@pytest.fixture(scope="module")
def golden() -> tuple[pd.DataFrame, pd.DataFrame]:
    return bars_and_features(golden_trades())


def row(frame: pd.DataFrame, hms: str) -> pd.Series:
    hit = frame[frame["ts"] == ts(hms)]
    assert len(hit) == 1, f"expected one row at {hms}, got {len(hit)}"
    return hit.iloc[0]


def std1(xs: list[float]) -> float:
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def test_frames_follow_the_column_contract(golden):
    bars, feats = golden
    assert tuple(bars.columns) == BAR_COLUMNS
    assert tuple(feats.columns) == FEATURE_FRAME_COLUMNS
    assert str(bars["ts"].dtype) == "datetime64[ns, UTC]"
    assert bars["trade_count"].dtype == np.int64
    assert (feats["feature_set_version"] == 1).all()


def test_bar_set(golden):
    bars, feats = golden
    ends = [ts(f"09:{31 + k}:00") for k in range(20)] + [ts("09:52:00"), ts("09:53:00")]
    assert list(bars["ts"]) == ends  # no pre-market bar, no bar for the odd-lot-only minute
    assert list(feats["ts"]) == ends


def test_rich_bar_by_hand(golden):
    bars, _ = golden
    b = row(bars, "09:52:00")
    assert b["open"] == 119.5  # j: same ts as a, sequence 1000 < 1001
    assert b["close"] == 121.0  # g at 09:51:59.999999999, though it arrived second
    assert b["high"] == 125.0  # e (derivatively priced) updates high/low
    assert b["low"] == 119.5
    # volume-eligible: j 100, a 200, b 100, c 10, d 500, e 300, g 100 (f excluded, dup ignored)
    assert b["volume"] == 1310.0
    assert b["trade_count"] == 7
    # VWAP-eligible: j, a, b, c (odd lot counts), g
    assert b["vwap"] == pytest.approx(
        (119.5 * 100 + 120 * 200 + 122 * 100 + 130 * 10 + 121 * 100) / 510, rel=1e-12
    )
    nxt = row(bars, "09:53:00")
    assert (nxt["open"], nxt["high"], nxt["low"], nxt["close"], nxt["volume"]) == (
        123.0,
        123.0,
        123.0,
        123.0,
        100.0,
    )


def test_all_ten_features_at_0952(golden):
    _, feats = golden
    f = row(feats, "09:52:00")
    pv_bar, v_bar = 61550.0, 510.0  # the 09:51 minute, from test_rich_bar_by_hand
    # [09:47, 09:52): k = 17, 18, 19 (117, 118, 119 × 100), odd lot 121 × 50, minute 09:51
    assert f["vwap_5m"] == pytest.approx(
        (11700 + 11800 + 11900 + 6050 + pv_bar) / (300 + 50 + v_bar), rel=1e-12
    )
    # [09:37, 09:52): k = 7 … 19 (107 … 119 × 100), odd lot, minute 09:51
    assert f["vwap_15m"] == pytest.approx(
        (sum(100 * (100 + k) for k in range(7, 20)) + 6050 + pv_bar) / (1300 + 50 + v_bar),
        rel=1e-12,
    )
    # bars ending in (09:47, 09:52]: closes 117, 118, 119, 121 (no bar at 09:51)
    assert f["realized_vol_5m"] == pytest.approx(
        std1([math.log(118 / 117), math.log(119 / 118), math.log(121 / 119)]), rel=1e-12
    )
    # bars ending in (09:37, 09:52]: closes 107 … 119, then 121
    closes = [100.0 + k for k in range(7, 20)] + [121.0]
    assert f["realized_vol_15m"] == pytest.approx(
        std1([math.log(b / a) for a, b in itertools.pairwise(closes)]), rel=1e-12
    )
    assert f["price_momentum_1m"] == pytest.approx((121 - 119.5) / 119.5, rel=1e-12)
    # last bar ending at or before 09:47 is k = 16, close 116
    assert f["price_momentum_5m"] == pytest.approx(121 / 116 - 1, rel=1e-12)
    # [09:47, 09:52) volume-eligible: 3 × 100 + odd lot 50 + 1310
    assert f["volume_5m"] == 1660.0
    # 20 preceding bars (k = 0 … 19), volume 100 each
    assert f["volume_ratio"] == pytest.approx(1310 / 100, rel=1e-12)
    assert f["trade_count_1m"] == 7.0
    assert f["avg_trade_size_1m"] == pytest.approx(1310 / 7, rel=1e-12)


def test_features_at_0953(golden):
    _, feats = golden
    f = row(feats, "09:53:00")
    # [09:48, 09:53): k = 18, 19, odd lot, minute 09:51, 123 × 100
    assert f["vwap_5m"] == pytest.approx(
        (11800 + 11900 + 6050 + 61550 + 12300) / (200 + 50 + 510 + 100), rel=1e-12
    )
    assert f["volume_5m"] == 200 + 50 + 1310 + 100
    # bars ending in (09:48, 09:53]: closes 118, 119, 121, 123
    assert f["realized_vol_5m"] == pytest.approx(
        std1([math.log(119 / 118), math.log(121 / 119), math.log(123 / 121)]), rel=1e-12
    )
    assert f["price_momentum_5m"] == pytest.approx(123 / 117 - 1, rel=1e-12)
    # preceding 20 bars: k = 1 … 19 (100 each) and the 09:52 bar (1310)
    assert f["volume_ratio"] == pytest.approx(100 / ((19 * 100 + 1310) / 20), rel=1e-12)
    assert f["price_momentum_1m"] == 0.0


def test_session_start_cuts_windows(golden):
    _, feats = golden
    first = row(feats, "09:31:00")
    assert first["vwap_5m"] == 100.0  # the 09:29:59 print at 50 is outside the session
    assert first["vwap_15m"] == 100.0
    assert first["volume_5m"] == 100.0
    for name in ("realized_vol_5m", "realized_vol_15m", "price_momentum_5m", "volume_ratio"):
        assert math.isnan(first[name]), name
    # two returns are the minimum for a sample std: bars ending 09:31, 09:32, 09:33
    assert math.isnan(row(feats, "09:32:00")["realized_vol_5m"])
    assert row(feats, "09:33:00")["realized_vol_5m"] == pytest.approx(
        std1([math.log(101 / 100), math.log(102 / 101)]), rel=1e-12
    )
    assert math.isnan(row(feats, "09:35:00")["price_momentum_5m"])  # would need a 09:30 bar
    assert row(feats, "09:36:00")["price_momentum_5m"] == pytest.approx(105 / 100 - 1)
    assert math.isnan(row(feats, "09:50:00")["volume_ratio"])  # only 19 preceding bars


def test_half_day_close_and_next_session():
    """2024-07-03 closes at 13:00 ET: a 13:00:10 print makes no bar; the next session's first
    bar does not see the previous session."""

    def at(stamp: str, price: float, tid: str, seq: int) -> dict:
        t = pd.Timestamp(stamp, tz="America/New_York").value
        return {
            "symbol": "BBB",
            "ts_event": t,
            "price": price,
            "size": 10.0,
            "exchange": 1,
            "trade_id": tid,
            "sequence": seq,
            "conditions": [],
        }

    df = pd.DataFrame(
        [
            at("2024-07-03 12:59:30", 10.0, "1", 1),
            at("2024-07-03 13:00:10", 11.0, "2", 2),
            at("2024-07-05 09:30:01", 12.0, "3", 3),
        ]
    )
    bars, feats = bars_and_features(df)
    assert list(bars["ts"]) == [
        pd.Timestamp("2024-07-03 17:00", tz="UTC"),
        pd.Timestamp("2024-07-05 13:31", tz="UTC"),
    ]
    second = feats.iloc[1]
    assert second["vwap_15m"] == 12.0
    assert math.isnan(second["price_momentum_5m"])
    assert second["volume_5m"] == 10.0
    # with extended hours the 13:00:10 print is in the (post-market) session
    bars_ext, _ = bars_and_features(df, sessions=session_index("XNYS", True))
    assert pd.Timestamp("2024-07-03 17:01", tz="UTC") in set(bars_ext["ts"])
