"""The ten features of feature_set_version 1 — each defined once, here.

Features are computed at each bar end ``T`` (a minute with a bar, see
:mod:`signalstack.features.bars`) from trades with ``ts_event < T`` only. Windows of length ``w``
cover trades with ``ts_event`` in ``[T − w, T)`` — exactly the minute rows with end in
``(T − w, T]`` — and never reach back past the start of ``T``'s trading session: a window that
would cross it is cut there. A feature whose definition needs more than is available is NaN.

:data:`DEFINITIONS` is the single source of the prose; docs/FEATURES.md is checked against it.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from signalstack.features.bars import Minutes, utc_times
from signalstack.features.columns import FEATURE_COLUMNS, FEATURE_SET_VERSION
from signalstack.features.sessions import NS_PER_MINUTE

F8 = npt.NDArray[np.float64]

VOLUME_RATIO_LOOKBACK: Final = 20  # bars
# What a feature row at T reads of the rows before it (the stream engines keep no more): the
# minute rows of the longest window, (T − 15m, T]; the 20 bars before T (volume_ratio); and
# the last bar at or before T − 5m (price_momentum_5m), which is among those 20 bars whenever
# it lies before the window (at most 15 bars fit in it).
LONGEST_WINDOW_MINUTES: Final = 15

DEFINITIONS: Final[dict[str, str]] = {
    "vwap_5m": "Σ(price·size) / Σ size over the VWAP-eligible trades in [T − 5m, T) "
    "(trade level, not bar closes); NaN if their Σ size is 0.",
    "vwap_15m": "as vwap_5m over [T − 15m, T).",
    "realized_vol_5m": "sample std (ddof=1) of the log returns between consecutive closes of the "
    "bars lying wholly inside [T − 5m, T) (bar ends in (T − 5m, T]); NaN with < 2 returns; "
    "not annualised.",
    "realized_vol_15m": "as realized_vol_5m over [T − 15m, T).",
    "price_momentum_1m": "(close − open) / open of the bar ending at T.",
    "price_momentum_5m": "close(T) / close of the last bar ending at or before T − 5m, − 1; "
    "NaN if there is none in the session.",
    "volume_5m": "Σ size of the volume-eligible trades in [T − 5m, T).",
    "volume_ratio": "bar volume / mean volume of the 20 preceding bars of the same session "
    "(current bar excluded); NaN if fewer than 20, or if that mean is 0.",
    "trade_count_1m": "number of volume-eligible trades in the bar ending at T.",
    "avg_trade_size_1m": "bar volume / trade_count_1m; NaN if trade_count_1m is 0.",
}
assert tuple(DEFINITIONS) == FEATURE_COLUMNS


def _groups(sym: npt.NDArray[np.int32], session: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Index of the first row of each row's (symbol, session) run (rows sorted by sym, ts)."""
    n = len(sym)
    change = np.ones(n, dtype=bool)
    if n > 1:
        change[1:] = (sym[1:] != sym[:-1]) | (session[1:] != session[:-1])
    first = np.flatnonzero(change)
    return np.repeat(first, np.diff(np.append(first, n)))


def _window_sums(
    values: list[F8], minute: npt.NDArray[np.int64], gstart: npt.NDArray[np.int64], w: int
) -> list[F8]:
    """Σ over rows j ≤ i of the same group with minute[j] > minute[i] − w (newest first).

    The summation order is fixed (row i, then i−1, ...), so a row's value does not depend on
    how much older history the table holds — the stream engines rely on this for parity.
    """
    n = len(minute)
    back = np.arange(n)[:, None] - np.arange(1, w)  # row i, k steps back (k = 1 … w − 1)
    ok = back >= gstart[:, None]
    jc = np.where(ok, back, 0)
    ok &= minute[jc] > (minute - w)[:, None]
    # stop at the first step with no row in any window (as far back as any window reaches)
    reach = ok.any(axis=0)
    steps = int(np.argmin(reach)) if not reach.all() else w - 1
    ok, jc = ok[:, :steps], jc[:, :steps]
    out = []
    for v in values:
        terms = np.empty((n, steps + 1))
        terms[:, 0] = v
        terms[:, 1:] = np.where(ok, v[jc], 0.0)
        out.append(_sum_in_order(terms))
    return out


def _sum_in_order(terms: F8) -> F8:
    """Σ of each row's terms left to right: ``((t0 + t1) + t2) + …``, the order a loop of
    ``+=`` gives (a running sum, never numpy's pairwise reduction)."""
    if terms.shape[1] == 0:
        return np.zeros(terms.shape[0])
    out: F8 = np.cumsum(terms, axis=1)[:, -1]
    return out


def _from_zero(terms: F8) -> F8:
    """``terms`` with a column of 0.0 in front: a running sum that starts from 0.0."""
    out = np.zeros((terms.shape[0], terms.shape[1] + 1))
    out[:, 1:] = terms
    return out


def _realized_vol(
    logret: F8, minute: npt.NDArray[np.int64], gstart: npt.NDArray[np.int64], w: int
) -> F8:
    """Sample std of the returns of bars i, i−1, ... whose predecessor is also in the window."""
    n = len(minute)
    if w < 2:
        return np.full(n, np.nan)
    # Bar j is in the window if same group and minute[j] > minute[i] − w; its return counts if
    # bar j − 1 is in the window too (column k: bar j = i − k, k = 0 … w − 2).
    j = np.arange(n)[:, None] - np.arange(w - 1)
    ok = (j - 1 >= gstart[:, None]) & (j - 1 >= 0)
    jc = np.where(ok, j - 1, 0)
    ok &= minute[jc] > (minute - w)[:, None]
    m = np.where(ok, logret[np.where(ok, j, 0)], np.nan)
    missing = np.isnan(m)
    cnt = np.sum(~missing, axis=1)
    s = _sum_in_order(_from_zero(np.where(missing, 0.0, m)))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s / cnt
        d = m - mean[:, None]
        ss = _sum_in_order(_from_zero(np.where(missing, 0.0, d * d)))
        return np.where(cnt >= 2, np.sqrt(ss / (cnt - 1)), np.nan)


def compute_features(minutes: Minutes, emit: npt.NDArray[np.bool_] | None = None) -> dict[str, F8]:
    """Features for every bar row of ``minutes`` (sorted by sym, ts) — or the bar rows selected
    by ``emit`` — as arrays aligned with ``minutes.take(has_bar & emit)``.

    ``minutes`` must hold the session's history needed by the selected rows (the stream engines
    keep the whole current session per symbol).
    """
    m = minutes
    minute = m.ts // NS_PER_MINUTE
    gstart = _groups(m.sym, m.session)
    # trade-level windows over all minute rows
    vw5_pv, vw5_v, vol5 = _window_sums([m.vwap_pv, m.vwap_v, m.volume], minute, gstart, 5)
    vw15_pv, vw15_v = _window_sums([m.vwap_pv, m.vwap_v], minute, gstart, 15)
    # bar-level definitions over bar rows only
    bar = np.flatnonzero(m.has_bar)
    b = m.take(bar)
    bmin = minute[bar]
    bg = _groups(b.sym, b.session)
    nb = len(b)
    bidx = np.arange(nb)
    prev_ok = bidx - 1 >= bg
    prev = np.where(prev_ok, bidx - 1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        logret = np.where(prev_ok, np.log(b.close / b.close[prev]), np.nan)
    rv5 = _realized_vol(logret, bmin, bg, 5)
    rv15 = _realized_vol(logret, bmin, bg, 15)
    # last bar at or before T − 5m in the same (symbol, session) run
    key = (bg.astype(np.int64) << 32) | bmin
    target = (bg.astype(np.int64) << 32) | (bmin - 5)
    at = np.searchsorted(key, target, side="right") - 1
    at_ok = at >= bg
    at_c = np.where(at_ok, at, 0)
    # mean volume of the 20 preceding bars in the session
    lb = VOLUME_RATIO_LOOKBACK
    have = bidx - bg >= lb
    j = np.where(have[:, None], bidx[:, None] - np.arange(1, lb + 1), 0)
    vsum = _sum_in_order(_from_zero(np.where(have[:, None], b.volume[j], 0.0)))
    vmean = vsum / lb
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            "vwap_5m": _ratio(vw5_pv[bar], vw5_v[bar]),
            "vwap_15m": _ratio(vw15_pv[bar], vw15_v[bar]),
            "realized_vol_5m": rv5,
            "realized_vol_15m": rv15,
            "price_momentum_1m": (b.close - b.open) / b.open,
            "price_momentum_5m": np.where(at_ok, b.close / b.close[at_c] - 1.0, np.nan),
            "volume_5m": vol5[bar],
            "volume_ratio": np.where(
                have & (vmean > 0), b.volume / np.where(vmean > 0, vmean, 1.0), np.nan
            ),
            "trade_count_1m": b.trade_count.astype(np.float64),
            "avg_trade_size_1m": _ratio(b.volume, b.trade_count.astype(np.float64)),
        }
    if emit is not None:
        sel = emit[bar]
        out = {k: v[sel] for k, v in out.items()}
    return out


def _ratio(num: F8, den: F8) -> F8:
    ok = den > 0
    return np.where(ok, num / np.where(ok, den, 1.0), np.nan)


def feature_frame(
    minutes: Minutes, symbols: npt.NDArray[np.object_], emit: npt.NDArray[np.bool_] | None = None
) -> pd.DataFrame:
    """The ``features`` rows for the bars of ``minutes`` (optionally only those in ``emit``)."""
    sel = minutes.has_bar if emit is None else minutes.has_bar & emit
    sym, ts = minutes.sym[sel], minutes.ts[sel]
    values = compute_features(minutes, emit)
    # every column is a fresh array: no copy needed (a frame per emission pays for one)
    frame = pd.DataFrame(
        {
            "symbol": symbols[sym] if len(sym) else np.zeros(0, dtype=object),
            "ts": utc_times(ts),
            **values,
            "feature_set_version": np.full(len(sym), FEATURE_SET_VERSION, dtype=np.int64),
        },
        copy=False,
    )
    return frame
