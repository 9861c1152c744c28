"""Feature set 2: features from 1-minute bars alone (pure numpy/pandas, no I/O).

A history source like Yahoo Finance gives OHLCV bars, not trades: no trade-level VWAP, no trade
count, no eligibility flags. Features computed from bars alone are therefore a different feature
set with its own ``feature_set_version`` (2); a model trained on them is never fed feature set 1
(or the other way round).

Time rules are feature set 1's (docs/FEATURES.md): a bar stamped ``T`` (its END) covers
``[T − 1m, T)``; the row at ``T`` reads only the bars stamped ``≤ T`` of ``T``'s own session; a
window of length ``w`` holds the bars ending in ``(T − w, T]`` and is cut at the session start;
a feature whose definition needs more than is available is NaN. Bars outside every session
(pre/post-market rows, if a source returns them) get no row, as in feature set 1.

The definitions feature set 1 already computes from bars (realised volatility, momentum, volume
ratio) are the SAME code (:func:`signalstack.features.definitions.compute_features` on minute
rows built from the bars); the trade-level ones are replaced by bar approximations:

- ``vwap_5m``/``vwap_15m``: Σ typical·volume / Σ volume with typical = (high + low + close) / 3
  (Yahoo has neither VWAP nor trades: an approximation of the trade-level VWAP);
- ``volume_5m``: Σ bar volume (Yahoo's volume, not the volume-eligible trades of feature set 1);
- ``range_1m`` (new): ln(high / low) of the bar ending at ``T``.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from signalstack.features.bars import Minutes, utc_times
from signalstack.features.definitions import DEFINITIONS, compute_features
from signalstack.features.sessions import NS_PER_MINUTE, SessionIndex, session_index
from signalstack.inference.inputs import INPUT_SPECS

BAR_FEATURE_SET_VERSION: Final = 2
BAR_FEATURE_COLUMNS: Final[tuple[str, ...]] = INPUT_SPECS[BAR_FEATURE_SET_VERSION].feature_columns
BAR_FEATURE_FRAME_COLUMNS: Final = ("symbol", "ts", *BAR_FEATURE_COLUMNS, "feature_set_version")
REQUIRED_BAR_COLUMNS: Final = ("symbol", "ts", "open", "high", "low", "close", "volume")

BAR_DEFINITIONS: Final[dict[str, str]] = {
    "vwap_5m": "Σ(typical·volume) / Σ volume over the bars ending in (T − 5m, T], typical = "
    "(high + low + close) / 3 (bars carry no trades: an approximation of the trade-level "
    "VWAP); NaN if their Σ volume is 0.",
    "vwap_15m": "as vwap_5m over the bars ending in (T − 15m, T].",
    "realized_vol_5m": DEFINITIONS["realized_vol_5m"],
    "realized_vol_15m": DEFINITIONS["realized_vol_15m"],
    "price_momentum_1m": DEFINITIONS["price_momentum_1m"],
    "price_momentum_5m": DEFINITIONS["price_momentum_5m"],
    "volume_5m": "Σ volume of the bars ending in (T − 5m, T].",
    "volume_ratio": DEFINITIONS["volume_ratio"],
    "range_1m": "ln(high / low) of the bar ending at T.",
}
assert tuple(BAR_DEFINITIONS) == BAR_FEATURE_COLUMNS


def _ns(values: pd.Series) -> npt.NDArray[np.int64]:
    idx = pd.DatetimeIndex(values)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    return np.asarray(idx.as_unit("ns").asi8, dtype=np.int64)


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": pd.Series(dtype=object),
            "ts": pd.Series(dtype="datetime64[ns, UTC]"),
            **{c: pd.Series(dtype=np.float64) for c in BAR_FEATURE_COLUMNS},
            "feature_set_version": pd.Series(dtype=np.int64),
        }
    )


def bar_features(bars: pd.DataFrame, sessions: SessionIndex | None = None) -> pd.DataFrame:
    """Feature set 2 for every in-session bar of ``bars``.

    ``bars``: ``symbol, ts`` (the bar END, UTC; 1-minute bars), ``open, high, low, close,
    volume`` (other columns ignored), any order. Returns :data:`BAR_FEATURE_FRAME_COLUMNS`, one
    row per in-session bar, ordered by (symbol, ts). Raises ``ValueError`` on missing columns,
    duplicate (symbol, ts), a stamp off the minute grid, a missing or non-positive price, or a
    high below the low.
    """
    missing = [c for c in REQUIRED_BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise ValueError(f"bars lack columns: {', '.join(missing)}")
    sessions = sessions if sessions is not None else session_index()
    if bars.empty:
        return _empty()
    ts = _ns(bars["ts"])
    if (ts % NS_PER_MINUTE != 0).any():
        raise ValueError("bar stamps must lie on the minute grid (feature set 2 reads 1m bars)")
    prices = bars[["open", "high", "low", "close"]].to_numpy(dtype=np.float64)
    if not (np.isfinite(prices) & (prices > 0)).all():
        raise ValueError("bars have a missing or non-positive price")
    if (prices[:, 1] < prices[:, 2]).any():
        raise ValueError("bars have a high below their low")
    session = sessions.session_start(ts - 1)  # the bar's last instant decides its session
    keep = np.flatnonzero(session >= 0)
    codes, names = pd.factorize(bars["symbol"].to_numpy(dtype=object), sort=True)
    sym = codes.astype(np.int32)[keep]
    ts, session, prices = ts[keep], session[keep], prices[keep]
    volume = bars["volume"].to_numpy(dtype=np.float64)[keep]
    order = np.lexsort((ts, sym))
    sym, ts, session, prices, volume = (
        sym[order],
        ts[order],
        session[order],
        prices[order],
        volume[order],
    )
    dup = (sym[1:] == sym[:-1]) & (ts[1:] == ts[:-1])
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise ValueError(
            f"bars of {names[sym[i]]!r} have duplicate timestamps ({utc_times(ts[i : i + 1])[0]})"
        )
    if len(ts) == 0:
        return _empty()
    o, h, lo, c = prices.T
    typical = (h + lo + c) / 3.0
    minutes = Minutes(
        sym=sym,
        ts=ts,
        session=session,
        has_bar=np.ones(len(ts), dtype=bool),
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=volume,
        trade_count=np.zeros(len(ts), dtype=np.int64),  # unknown; feeds no feature of this set
        vwap_pv=typical * volume,
        vwap_v=volume,
    )
    values = compute_features(minutes)
    values["range_1m"] = np.log(h / lo)
    return pd.DataFrame(
        {
            "symbol": np.asarray(names, dtype=object)[sym],
            "ts": utc_times(ts),
            **{k: values[k] for k in BAR_FEATURE_COLUMNS},
            "feature_set_version": np.full(len(ts), BAR_FEATURE_SET_VERSION, dtype=np.int64),
        }
    )


__all__ = [
    "BAR_DEFINITIONS",
    "BAR_FEATURE_COLUMNS",
    "BAR_FEATURE_FRAME_COLUMNS",
    "BAR_FEATURE_SET_VERSION",
    "bar_features",
]
