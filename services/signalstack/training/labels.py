"""Training labels — each defined once, here, as pure functions of 1-minute bars (no I/O).

Time convention (docs/MODELS.md): a bar stamped ``T`` covers ``[T − 1m, T)`` and is knowable
at ``T``; a decision is taken at a bar end ``T``, with the feature row stamped ``T``. A label
at ``T`` with horizon ``h`` reads **only the bars stamped in (T, T + h]** — the trades in
``[T, T + h)`` — never a bar stamped at or before ``T``:

- the *entry* is the open of the first bar after ``T`` (the first trade at or after ``T``: the
  earliest price a decision at ``T`` could trade at), the *exit* the close of the last bar
  stamped at or before ``T + h``;
- the window's log returns are ``log(close/open)`` of that first bar, then close to close of
  the following bars in the window: ``R`` (their sum) is the forward log return and
  ``RV = sqrt(Σ r²)`` the forward realised volatility of the window (not demeaned, so a clean
  trend is not mistaken for noise).

A label is **missing** (``<NA>``) when ``T`` is not a bar end inside a session, when
``T + h`` lies after the close of ``T``'s session (never mixed across sessions), when the bars
known so far end before ``T + h`` (``known_until``), or when fewer than ``min_bars`` bars lie in
the window.

Labels:

- **direction** (:func:`direction_labels`): ``up`` if ``R > band · RV``, ``down`` if
  ``R < −band · RV``, else ``flat``. The dead band is a multiple of the window's own realised
  volatility, so the classes mean the same thing at the open and at midday, in calm and in
  volatile markets (``R / RV`` is scale-free). With ``n`` returns ``|R| ≤ √n · RV``.
- **regime** (:func:`regime_labels`): ``volatile`` if the window's realised volatility, per minute
  of the window and scaled to a regular session (``sqrt(Σ r² / minutes · 390)``, a daily-equivalent
  volatility), exceeds ``vol_threshold``; else ``trending`` if the trend strength ``|R| / RV``
  (a t-statistic of the drift: ~N(0, 1) for a driftless walk) is at least ``trend_z``; else
  ``calm``.
- **anomaly** ground truth (:func:`anomaly_truth`): for scoring only; a bar is anomalous when
  its minute overlaps one of the simulator's labelled anomalies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from signalstack.features.sessions import NS_PER_MINUTE, SessionIndex, session_index

DIRECTIONS: Final = ("down", "flat", "up")  # class codes 0, 1, 2
REGIMES: Final = ("calm", "trending", "volatile")  # class codes 0, 1, 2 (the simulator's order)
SESSION_MINUTES: Final = 390  # a regular XNYS session: the daily-equivalent scale of a vol

I8 = npt.NDArray[np.int64]
F8 = npt.NDArray[np.float64]
B1 = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class DirectionConfig:
    horizon_minutes: int = 5
    band: float = 0.5  # dead band, a multiple of the window's realised volatility
    min_bars: int = 2

    def __post_init__(self) -> None:
        _check(self.horizon_minutes >= 1, "direction horizon must be at least 1 minute")
        _check(self.band >= 0, "direction dead band must be >= 0")
        _check(self.min_bars >= 1, "min_bars must be at least 1")


@dataclass(frozen=True, slots=True)
class RegimeConfig:
    horizon_minutes: int = 30
    vol_threshold: float = 0.024  # daily-equivalent realised volatility above which: volatile
    trend_z: float = 1.4  # |R| / RV at or above which (and not volatile): trending
    min_bars: int = 2

    def __post_init__(self) -> None:
        _check(self.horizon_minutes >= 1, "regime horizon must be at least 1 minute")
        _check(self.vol_threshold > 0, "regime vol threshold must be > 0")
        _check(self.trend_z >= 0, "regime trend threshold must be >= 0")
        _check(self.min_bars >= 1, "min_bars must be at least 1")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def utc_ns(values: Any) -> I8:
    """Timestamps (datetime64 Series/Index, tz-aware or naive = UTC, or int ns) → int64 ns."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    idx = pd.DatetimeIndex(values)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    return np.asarray(idx.as_unit("ns").asi8, dtype=np.int64)


def _decisions(bars: pd.DataFrame, decisions: pd.DataFrame | None) -> pd.DataFrame:
    keys = bars if decisions is None else decisions
    out = keys[["symbol", "ts"]].reset_index(drop=True)
    out["ts"] = pd.to_datetime(utc_ns(out["ts"]), utc=True)
    return out


def _session_end(sessions: SessionIndex, t: I8) -> I8:
    """Close (ns) of the session in which ``t`` is a bar end (start < t ≤ end), else -1."""
    m = t - 1  # the bar ending at t covers [t − 1m, t): its last instant decides the session
    i = np.searchsorted(sessions.starts, m, side="right") - 1
    j = np.where(i >= 0, i, 0)
    inside = (i >= 0) & (m < sessions.ends[j])
    return np.where(inside, sessions.ends[j], -1).astype(np.int64)


@dataclass(frozen=True, slots=True)
class Windows:
    """Forward-window statistics per decision row, aligned with the decision frame."""

    keys: pd.DataFrame  # symbol, ts (the decision times T)
    label_end: I8  # T + h (ns): the last bar stamp the label may read
    valid: B1
    n_bars: I8
    fwd_return: F8  # R = log(exit / entry)
    realized_var: F8  # Σ r² over the window
    minutes: F8  # minutes from T to the last bar in the window


def forward_windows(
    bars: pd.DataFrame,
    horizon_minutes: int,
    *,
    decisions: pd.DataFrame | None = None,
    sessions: SessionIndex | None = None,
    known_until: Any = None,
    min_bars: int = 2,
) -> Windows:
    """The bars stamped in ``(T, T + h]`` for each decision ``T``, summarised (see module doc).

    ``bars``: ``symbol``, ``ts`` (bar END), ``open``, ``close`` (other columns ignored).
    ``decisions``: ``symbol``, ``ts`` (default: every bar end). ``known_until``: the newest bar
    stamp the caller has data for (a training cut-off); windows ending after it are missing.
    """
    sessions = sessions if sessions is not None else session_index()
    keys = _decisions(bars, decisions)
    n = len(keys)
    h = int(horizon_minutes) * NS_PER_MINUTE
    t = utc_ns(keys["ts"])
    out_n = np.zeros(n, dtype=np.int64)
    out_r = np.full(n, np.nan)
    out_v = np.full(n, np.nan)
    out_m = np.full(n, np.nan)
    b_sym = bars["symbol"].to_numpy()
    b_ts = utc_ns(bars["ts"])
    for symbol in pd.unique(keys["symbol"]):
        rows = np.flatnonzero(keys["symbol"].to_numpy() == symbol)
        mine = np.flatnonzero(b_sym == symbol)
        order = mine[np.argsort(b_ts[mine], kind="stable")]
        ts = b_ts[order]
        if len(ts) == 0:
            continue
        if len(ts) > 1 and not (np.diff(ts) > 0).all():
            raise ValueError(f"bars of {symbol!r} have duplicate timestamps")
        lo_px = np.log(bars["open"].to_numpy(dtype=np.float64)[order])
        lc = np.log(bars["close"].to_numpy(dtype=np.float64)[order])
        q = np.zeros(len(ts))
        q[1:] = np.diff(lc) ** 2  # squared close-to-close returns; q[j] ends at bar j
        d = t[rows]
        lo = np.searchsorted(ts, d, side="right")  # first bar stamped after T
        hi = np.searchsorted(ts, d + h, side="right")  # one past the last stamped ≤ T + h
        cnt = hi - lo
        has = cnt > 0
        a = np.where(has, lo, 0)
        b = np.where(has, hi - 1, 0)
        first = (lc[a] - lo_px[a]) ** 2
        # Σ q[a+1..b], summed over the window's own values only (a prefix-sum difference
        # would carry the rounding of every bar before the window into the label).
        width = int(cnt.max(initial=1))
        idx = a[:, None] + 1 + np.arange(max(width - 1, 0))[None, :]
        inside = idx <= b[:, None]
        rest = np.where(inside, q[np.minimum(idx, len(q) - 1)], 0.0).sum(axis=1)
        out_n[rows] = cnt
        out_r[rows] = np.where(has, lc[b] - lo_px[a], np.nan)
        out_v[rows] = np.where(has, first + rest, np.nan)
        out_m[rows] = np.where(has, (ts[b] - d) / NS_PER_MINUTE, np.nan)
    end = t + h
    close = _session_end(sessions, t)
    valid = (close >= 0) & (end <= close) & (out_n >= min_bars)
    if known_until is not None:
        valid &= end <= int(utc_ns(pd.Series([pd.Timestamp(known_until)]))[0])
    return Windows(keys, end, valid, out_n, out_r, out_v, out_m)


def _codes(values: I8, valid: B1) -> pd.Series:
    s = pd.Series(values, dtype="Int8")
    s[~valid] = pd.NA
    return s


def direction_labels(
    bars: pd.DataFrame,
    config: DirectionConfig = DirectionConfig(),
    *,
    decisions: pd.DataFrame | None = None,
    sessions: SessionIndex | None = None,
    known_until: Any = None,
) -> pd.DataFrame:
    """``symbol, ts, label_end, fwd_return, direction`` (Int8 codes into :data:`DIRECTIONS`,
    ``<NA>`` when missing), one row per decision, in the decisions' order."""
    w = forward_windows(
        bars,
        config.horizon_minutes,
        decisions=decisions,
        sessions=sessions,
        known_until=known_until,
        min_bars=config.min_bars,
    )
    rv = np.sqrt(np.nan_to_num(w.realized_var))
    r = np.nan_to_num(w.fwd_return)
    code = np.where(r > config.band * rv, 2, np.where(r < -config.band * rv, 0, 1))
    out = w.keys.copy()
    out["label_end"] = pd.to_datetime(w.label_end, utc=True)
    out["fwd_return"] = np.where(w.valid, w.fwd_return, np.nan)
    out["direction"] = _codes(code, w.valid)
    return out


def regime_labels(
    bars: pd.DataFrame,
    config: RegimeConfig = RegimeConfig(),
    *,
    decisions: pd.DataFrame | None = None,
    sessions: SessionIndex | None = None,
    known_until: Any = None,
) -> pd.DataFrame:
    """``symbol, ts, label_end, fwd_vol, trend_z, regime`` (Int8 codes into :data:`REGIMES`,
    ``<NA>`` when missing); ``fwd_vol`` is the daily-equivalent realised volatility of the
    window, ``trend_z`` the signed ``R / RV``."""
    w = forward_windows(
        bars,
        config.horizon_minutes,
        decisions=decisions,
        sessions=sessions,
        known_until=known_until,
        min_bars=config.min_bars,
    )
    var = np.nan_to_num(w.realized_var)
    minutes = np.where(w.minutes > 0, w.minutes, 1.0)
    vol = np.sqrt(var / minutes * SESSION_MINUTES)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(var > 0, np.nan_to_num(w.fwd_return) / np.sqrt(var), 0.0)
    code = np.where(vol > config.vol_threshold, 2, np.where(np.abs(z) >= config.trend_z, 1, 0))
    out = w.keys.copy()
    out["label_end"] = pd.to_datetime(w.label_end, utc=True)
    out["fwd_vol"] = np.where(w.valid, vol, np.nan)
    out["trend_z"] = np.where(w.valid, z, np.nan)
    out["regime"] = _codes(code, w.valid)
    return out


# ---- simulator ground truth (scoring only; never a training input) ----------------------------
def regime_truth(
    regime_frame: pd.DataFrame, decisions: pd.DataFrame, horizon_minutes: int
) -> pd.Series:
    """The simulator's regime over each decision's label window: the most frequent per-minute
    regime among the minutes starting in ``[T, T + h)`` (the minutes whose trades the bars in
    ``(T, T + h]`` hold; ties go to the lower code). ``regime_frame`` is
    ``SimulatedMarket.regime_frame()`` (``ts`` = minute START in ns). Int8 codes into
    :data:`REGIMES`, ``<NA>`` where the window has no simulated minute."""
    keys = _decisions(decisions, None)
    code_of = {name: i for i, name in enumerate(REGIMES)}
    starts = utc_ns(regime_frame["ts"])
    codes = regime_frame["regime"].map(code_of).to_numpy(dtype=np.int64)
    out = np.full(len(keys), -1, dtype=np.int64)
    t = utc_ns(keys["ts"])
    h = int(horizon_minutes)
    for symbol in pd.unique(keys["symbol"]):
        rows = np.flatnonzero(keys["symbol"].to_numpy() == symbol)
        mine = np.flatnonzero(regime_frame["symbol"].to_numpy() == symbol)
        by_start = dict(zip(starts[mine].tolist(), codes[mine].tolist(), strict=True))
        for r in rows.tolist():
            got = [by_start.get(int(t[r]) + k * NS_PER_MINUTE) for k in range(h)]
            seen = [c for c in got if c is not None]
            if seen:
                out[r] = int(np.bincount(seen, minlength=len(REGIMES)).argmax())
    return _codes(out, out >= 0)


def anomaly_truth(decisions: pd.DataFrame, anomalies: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """``symbol, ts, anomaly`` (bool), ``anomaly_kind`` (str, "" if none) for each bar end ``T``:
    anomalous when the bar's minute ``[T − 1m, T)`` overlaps a labelled anomaly's
    ``[start_ns, end_ns)`` (``SimulatedMarket.anomalies``). Unlike the forward labels this
    describes the bar ending at ``T`` itself — what an anomaly detector scores at ``T``."""
    keys = _decisions(decisions, None)
    t = utc_ns(keys["ts"])
    sym = keys["symbol"].to_numpy()
    flag = np.zeros(len(keys), dtype=bool)
    kind = np.full(len(keys), "", dtype=object)
    for a in anomalies:
        hit = (
            (sym == a["symbol"]) & (t - NS_PER_MINUTE < int(a["end_ns"])) & (t > int(a["start_ns"]))
        )
        kind[hit & ~flag] = str(a["kind"])
        flag |= hit
    out = keys.copy()
    out["anomaly"] = flag
    out["anomaly_kind"] = kind
    return out


def max_horizon_minutes(*configs: DirectionConfig | RegimeConfig) -> int:
    """The longest label horizon of the given configs (what purging/embargo are sized from)."""
    return max((c.horizon_minutes for c in configs), default=0)
