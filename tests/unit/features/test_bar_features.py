"""Feature set 2 (bars only): the definitions it shares with feature set 1 give feature set 1's
values on the same bars; windows are by time, cut at the session start; NaN when undefined; a
row at T never reads a bar stamped after T."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from signalstack.features.bar_features import (
    BAR_FEATURE_COLUMNS,
    BAR_FEATURE_FRAME_COLUMNS,
    BAR_FEATURE_SET_VERSION,
    bar_features,
)
from signalstack.features.columns import FEATURE_SET_VERSION
from signalstack.features.sessions import SessionIndex, session_index
from signalstack.inference.inputs import INPUT_SPECS
from signalstack.store.duckdb import DuckDBStore
from signalstack.training.frames import SimulatedData, simulate_into_store

OPEN = pd.Timestamp("2024-03-05 14:30", tz="UTC")
NEXT_OPEN = OPEN + pd.Timedelta(days=1)
SESSIONS = SessionIndex.from_bounds(
    [(OPEN, OPEN + pd.Timedelta(minutes=390)), (NEXT_OPEN, NEXT_OPEN + pd.Timedelta(minutes=390))]
)
SHARED = (
    "realized_vol_5m",
    "realized_vol_15m",
    "price_momentum_1m",
    "price_momentum_5m",
    "volume_ratio",
    "volume_5m",
)


def bars_at(
    minutes: Sequence[int],
    closes: Sequence[float] | npt.NDArray[np.float64],
    volumes: Sequence[float] | npt.NDArray[np.float64] | None = None,
    day: int = 0,
    symbol: str = "AAA",
) -> pd.DataFrame:
    """Bars ending ``m`` minutes after the open of session ``day``; open = previous close."""
    c = np.asarray(closes, dtype=float)
    o = np.concatenate([[c[0]], c[:-1]])
    v = np.full(len(c), 100.0) if volumes is None else np.asarray(volumes, dtype=float)
    base = OPEN if day == 0 else NEXT_OPEN
    return pd.DataFrame(
        {
            "symbol": symbol,
            "ts": [base + pd.Timedelta(minutes=m) for m in minutes],
            "open": o,
            "high": np.maximum(o, c) * 1.001,
            "low": np.minimum(o, c) * 0.999,
            "close": c,
            "volume": v,
        }
    )


def walk(n: int, seed: int = 0, start: float = 100.0) -> npt.NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    out: npt.NDArray[np.float64] = start * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    return out


@pytest.fixture(scope="module")
def simulated() -> Iterator[SimulatedData]:
    store = DuckDBStore()
    store.migrate()
    yield simulate_into_store(
        store, days=2, symbols=("AAA", "BBB", "CCC"), seed=3, trades_per_day=6_000
    )
    store.close()


def test_columns_are_the_input_spec_of_feature_set_2() -> None:
    assert (BAR_FEATURE_SET_VERSION, FEATURE_SET_VERSION) == (2, 1)
    assert INPUT_SPECS[2].feature_columns == BAR_FEATURE_COLUMNS
    out = bar_features(bars_at(range(1, 31), walk(30)), SESSIONS)
    assert tuple(out.columns) == BAR_FEATURE_FRAME_COLUMNS
    assert (out["feature_set_version"] == 2).all()
    assert str(out["ts"].dt.tz) == "UTC"
    assert len(bar_features(bars_at(range(1, 31), walk(30)).iloc[:0], SESSIONS)) == 0


def test_shared_definitions_equal_feature_set_1_on_the_engines_bars(
    simulated: SimulatedData,
) -> None:
    sim = simulated
    bars = sim.store.bars(sim.symbols, sim.start, sim.end)
    v1 = sim.store.training_frame(sim.symbols, sim.start, sim.end, as_of=sim.end)
    v2 = bar_features(bars.sample(frac=1.0, random_state=1), session_index())  # any input order
    assert len(v2) == len(v1) == len(bars) > 2000
    pd.testing.assert_frame_equal(
        v2[["symbol", "ts"]], v1[["symbol", "ts"]].astype(v2[["symbol", "ts"]].dtypes)
    )
    for c in SHARED:
        a, b = v1[c].to_numpy(), v2[c].to_numpy()
        assert (np.isnan(a) == np.isnan(b)).all(), c
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=0, equal_nan=True, err_msg=c)
    # the approximations: the VWAPs lie within the window's price range; the range is the bar's
    assert v2["vwap_5m"].notna().all()
    assert (v2["vwap_5m"] <= bars["high"].max()).all() and (
        v2["vwap_5m"] >= bars["low"].min()
    ).all()
    np.testing.assert_allclose(v2["range_1m"], np.log(bars["high"] / bars["low"]), rtol=1e-15)
    assert (v2["vwap_5m"] - v1["vwap_5m"]).abs().max() / v1["vwap_5m"].mean() < 0.01


def test_windows_are_by_time_not_by_count() -> None:
    # bars at minutes 1..10, then a gap, then 14: the 5m window at 14 holds only 10 and 14
    closes = [100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110]
    b = bars_at([*range(1, 11), 14], closes, volumes=[10.0 * (i + 1) for i in range(11)])
    out = bar_features(b, SESSIONS).set_index(b["ts"])
    t = OPEN + pd.Timedelta(minutes=14)
    row = out.loc[t]
    assert row["volume_5m"] == 100.0 + 110.0
    hi, lo, cl, v = (b.set_index("ts").loc[[t - pd.Timedelta(minutes=4), t], k] for k in
                     ("high", "low", "close", "volume"))  # fmt: skip
    typical = (hi + lo + cl) / 3
    assert row["vwap_5m"] == pytest.approx(float((typical * v).sum() / v.sum()), rel=1e-12)
    # momentum 5m: the last bar ending at or before T − 5m = minute 9
    assert row["price_momentum_5m"] == pytest.approx(110 / 108 - 1, rel=1e-12)
    # realised vol 5m: bar 10's predecessor (9) is outside (T − 5m, T], so the window holds
    # one return (10 → 14): fewer than 2, NaN
    assert np.isnan(row["realized_vol_5m"])
    assert row["range_1m"] == pytest.approx(np.log(b["high"].iloc[-1] / b["low"].iloc[-1]))


def test_nan_until_a_window_is_defined_and_for_a_zero_volume_window() -> None:
    n = 30
    vols = np.full(n, 100.0)
    vols[:5] = 0.0
    out = bar_features(bars_at(range(1, n + 1), walk(n), vols), SESSIONS)
    assert out["realized_vol_5m"].isna().tolist()[:3] == [True, True, False]
    assert out["price_momentum_5m"].isna().sum() == 5  # bars ending at open + 1 … 5
    assert out["volume_ratio"].isna().sum() == 20  # needs 20 bars of history (their mean > 0)
    assert out["vwap_5m"].isna().tolist()[:6] == [True] * 5 + [False]  # Σ volume 0: undefined
    assert out["price_momentum_1m"].notna().all() and out["range_1m"].notna().all()


def test_windows_are_cut_at_the_session_start() -> None:
    day0 = bars_at(range(371, 391), walk(20, seed=1))
    day1 = bars_at(range(1, 4), walk(3, seed=2, start=150.0), day=1)
    out = bar_features(pd.concat([day0, day1], ignore_index=True), SESSIONS)
    first = out[out["ts"] == NEXT_OPEN + pd.Timedelta(minutes=1)].iloc[0]
    assert first["volume_5m"] == 100.0  # yesterday's last minutes are not in the window
    assert first["vwap_5m"] == pytest.approx(
        float(day1[["high", "low", "close"]].iloc[0].sum() / 3), rel=1e-12
    )
    for c in ("realized_vol_5m", "realized_vol_15m", "price_momentum_5m", "volume_ratio"):
        assert np.isnan(first[c]), c
    # alone, the second session gives the same rows: nothing of the first one is read
    alone = bar_features(day1, SESSIONS)
    pd.testing.assert_frame_equal(
        out[out["ts"] > NEXT_OPEN].reset_index(drop=True), alone.reset_index(drop=True)
    )


def test_a_row_never_changes_when_later_bars_change() -> None:
    b = pd.concat(
        [
            bars_at(range(1, 61), walk(60, seed=4)),
            bars_at(range(1, 61), walk(60, seed=5), symbol="BBB"),
        ],
        ignore_index=True,
    )
    before = bar_features(b, SESSIONS)
    cut = OPEN + pd.Timedelta(minutes=30)
    later = b["ts"] > cut
    rng = np.random.default_rng(9)
    b2 = b.copy()
    b2.loc[later, ["open", "close"]] = rng.uniform(50, 60, (int(later.sum()), 2))
    b2.loc[later, "high"] = b2.loc[later, ["open", "close"]].max(axis=1) + 1
    b2.loc[later, "low"] = b2.loc[later, ["open", "close"]].min(axis=1) - 1
    b2.loc[later, "volume"] = rng.uniform(1, 1e6, int(later.sum()))
    after = bar_features(b2, SESSIONS)
    keep = before["ts"] <= cut
    pd.testing.assert_frame_equal(before[keep], after[keep])
    assert not before[~keep].equals(after[~keep])  # the corruption was real
    # and with the later bars gone entirely, the same rows
    pd.testing.assert_frame_equal(
        before[keep].reset_index(drop=True), bar_features(b[~later], SESSIONS)
    )


def test_bars_outside_every_session_get_no_row() -> None:
    b = bars_at([-5, -1, 0, 1, 2, 391], walk(6))
    out = bar_features(b, SESSIONS)
    assert out["ts"].tolist() == [OPEN + pd.Timedelta(minutes=m) for m in (1, 2)]
    assert out["volume_5m"].iloc[0] == 100.0  # the pre-open bars feed nothing


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.drop(columns="volume"), "lack columns: volume"),
        (lambda b: pd.concat([b, b.iloc[[3]]]), "duplicate timestamps"),
        (lambda b: b.assign(low=b["low"].where(b.index != 2, 0.0)), "non-positive price"),
        (lambda b: b.assign(close=b["close"].where(b.index != 2, np.nan)), "missing"),
        (lambda b: b.assign(ts=b["ts"] + pd.Timedelta(seconds=30)), "minute grid"),
        (lambda b: b.assign(high=b["low"] - 0.5), "high below"),
    ],
)
def test_bad_bars_get_a_clear_error(change, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        bar_features(change(bars_at(range(1, 11), walk(10))), SESSIONS)
