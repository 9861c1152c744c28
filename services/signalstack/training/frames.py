"""Point-in-time training frames, read through the :class:`~signalstack.store.base.Store`.

One row per feature row (a decision time ``T`` = the row's bar end): the features stamped ``T``
and the labels at ``T``. What each part may read (docs/MODELS.md):

- **features at T**: the store's feature row stamped ``T``, read with
  :meth:`Store.training_frame` (``start <= ts < end`` and ``ts <= as_of``); the row itself was
  computed from trades with ``ts_event < T`` only (docs/FEATURES.md);
- **labels at T**: computed here, by :mod:`signalstack.training.labels`, from the bars stamped in
  ``(T, T + h]`` only, read with :meth:`Store.bars` up to ``as_of`` at most; a label whose
  window ends after ``as_of`` (not yet resolved at the cut-off) or after the session close is
  missing.

The join is an **equality join on (symbol, ts)** by construction: the labels are computed *at*
the feature rows' own keys (they are the label functions' decision times) and attached row by
row — there is no nearest-row matching (no ``merge_asof``), so no row can pick up a later one.

The simulator reaches the same path: :func:`simulate_into_store` runs seeded simulated sessions
through the local stream engine (the feature code every consumer shares) into a store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

from signalstack.features.columns import FEATURE_SET_VERSION
from signalstack.features.sessions import NS_PER_MINUTE, SessionIndex, session_index
from signalstack.store.base import Store, TimeLike, to_utc
from signalstack.training.labels import (
    DirectionConfig,
    RegimeConfig,
    direction_labels,
    max_horizon_minutes,
    regime_labels,
    utc_ns,
)

if TYPE_CHECKING:
    from signalstack.config import TrainingSettings

LABEL_COLUMNS: Final = (
    "direction",
    "direction_end",
    "fwd_return",
    "regime",
    "regime_end",
    "fwd_vol",
    "trend_z",
)


@dataclass(frozen=True, slots=True)
class LabelSpec:
    """The label definitions a frame is built with."""

    direction: DirectionConfig = field(default_factory=DirectionConfig)
    regime: RegimeConfig = field(default_factory=RegimeConfig)

    @classmethod
    def from_settings(cls, s: TrainingSettings) -> LabelSpec:
        return cls(
            DirectionConfig(s.direction_horizon_minutes, s.direction_band),
            RegimeConfig(s.regime_horizon_minutes, s.regime_vol_threshold, s.regime_trend_z),
        )

    @property
    def horizon_minutes(self) -> int:
        return max_horizon_minutes(self.direction, self.regime)


def training_frame(
    store: Store,
    symbols: Sequence[str],
    start: TimeLike,
    end: TimeLike,
    *,
    as_of: TimeLike | None = None,
    labels: LabelSpec | None = None,
    sessions: SessionIndex | None = None,
    feature_set_version: int = FEATURE_SET_VERSION,
) -> pd.DataFrame:
    """Features and labels for the decision times ``start <= T < end`` (and ``T <= as_of``).

    ``as_of``: the training cut-off, the newest instant whose data the frame may use (default:
    no cut-off beyond what the labels need, ``end`` plus the longest label horizon). Columns:
    ``symbol, ts``, the features, ``feature_set_version``, ``session`` (the start of the
    session the bar ending at ``T`` belongs to: the LSTM's sequences never cross it), then
    :data:`LABEL_COLUMNS`
    (``direction``/``regime`` Int8 codes with ``<NA>`` when missing; ``*_end`` the label
    window's end ``T + h``). Ordered by (symbol, ts).
    """
    spec = labels or LabelSpec()
    sessions = sessions if sessions is not None else session_index()
    lo, hi = to_utc(start), to_utc(end)
    horizon = pd.Timedelta(minutes=spec.horizon_minutes)
    cut = to_utc(as_of) if as_of is not None else hi + horizon
    version = feature_set_version
    feats = store.training_frame(symbols, lo, hi, as_of=cut, feature_set_version=version)
    feats = feats.reset_index(drop=True)
    # bars stamped in (T, T + h] for T in [start, min(end, as_of)]: ts in [start, end + h) and
    # ts <= as_of. Store ranges are half-open and both stores keep microseconds, so the
    # inclusive cut is as_of + 1 µs (1 ns would be dropped and lose a bar stamped as_of);
    # the exact cut is applied again here.
    bars = store.bars(symbols, lo, min(hi + horizon, cut + pd.Timedelta(microseconds=1)))
    return attach_labels(feats, bars, spec, sessions, cut)


def attach_labels(
    features: pd.DataFrame,
    bars: pd.DataFrame,
    spec: LabelSpec,
    sessions: SessionIndex,
    cut: TimeLike | None,
) -> pd.DataFrame:
    """``features`` (``symbol, ts, …`` ordered by (symbol, ts)) with ``session`` and
    :data:`LABEL_COLUMNS` added: the labels computed AT the feature rows' own keys from
    ``bars`` (1-minute bars, ``ts`` = bar end), an equality join by construction.

    ``cut``: the newest bar stamp the labels may read (the training cut-off; bars stamped after
    it are ignored and a window ending after it is missing); None = every bar given. Any feature
    set's rows can be labelled this way: the labels read bars only, never a feature column.
    """
    known = to_utc(cut) if cut is not None else None
    if known is not None:
        bars = bars[bars["ts"] <= known]
    bars = bars.reset_index(drop=True)
    feats = features.reset_index(drop=True)
    keys = feats[["symbol", "ts"]]
    d = direction_labels(bars, spec.direction, decisions=keys, sessions=sessions, known_until=known)
    r = regime_labels(bars, spec.regime, decisions=keys, sessions=sessions, known_until=known)
    for lab in (d, r):  # row-aligned by construction; checked, never assumed
        if (
            not (lab["symbol"].to_numpy() == keys["symbol"].to_numpy()).all()
            or not (lab["ts"].to_numpy() == keys["ts"].to_numpy()).all()
        ):
            raise AssertionError("labels are not aligned with the feature rows")
    out = feats.copy()
    out["session"] = session_of(out["ts"], sessions)
    out["direction"] = d["direction"].array
    out["direction_end"] = d["label_end"].to_numpy()
    out["fwd_return"] = d["fwd_return"].to_numpy()
    out["regime"] = r["regime"].array
    out["regime_end"] = r["label_end"].to_numpy()
    out["fwd_vol"] = r["fwd_vol"].to_numpy()
    out["trend_z"] = r["trend_z"].to_numpy()
    return out


def session_of(ts: Any, sessions: SessionIndex) -> pd.Series:
    """The start (UTC) of the session holding the bar that ENDS at each ``ts`` (the bar covers
    ``[ts − 1m, ts)``, so the bar ending at the close belongs to that session); NaT outside."""
    t = utc_ns(ts)
    start = sessions.session_start(t - 1)
    values = pd.to_datetime(np.where(start >= 0, start, np.iinfo(np.int64).min), utc=True)
    return pd.Series(values, index=ts.index if isinstance(ts, pd.Series) else None)


# ---- the simulator as a data source ------------------------------------------------------------
@dataclass
class SimulatedData:
    """Simulated sessions loaded into a store, with the simulator's ground truth."""

    store: Store
    symbols: tuple[str, ...]
    days: tuple[dt.date, ...]
    regimes: pd.DataFrame  # SimulatedMarket.regime_frame() of every day (ts = minute START, ns)
    anomalies: list[dict[str, Any]]
    trades: int
    start: pd.Timestamp  # first session open
    end: pd.Timestamp  # last session close (exclusive bound covering every bar)


def full_sessions(n: int, last: dt.date, calendar: str = "XNYS") -> tuple[dt.date, ...]:
    """The ``n`` full (390-minute) sessions of ``calendar`` ending at or before ``last``."""
    idx = session_index(calendar)
    full = (idx.ends - idx.starts) == 390 * NS_PER_MINUTE
    opens = pd.to_datetime(idx.starts[full], utc=True).tz_convert("America/New_York")
    dates = [d for d in opens.date if d <= last]
    if len(dates) < n:
        raise ValueError(f"the calendar has only {len(dates)} full sessions before {last}")
    return tuple(dates[-n:])


def simulate_into_store(
    store: Store,
    *,
    days: int | Sequence[dt.date] = 2,
    symbols: Sequence[str] = ("AAPL", "MSFT", "NVDA"),
    seed: int = 7,
    trades_per_day: int = 10_000,
    last_day: dt.date = dt.date(2025, 11, 20),
    calendar: str = "XNYS",
    random_walk: bool = False,
) -> SimulatedData:
    """Seeded simulated sessions → the local stream engine → ``store`` (bars and features).

    Each day gets its own seed derived from ``seed`` and the date, so the days differ and the
    whole set is reproducible. ``days``: a count of full sessions ending at ``last_day``, or
    explicit session dates. ``random_walk``: the simulator's driftless, regime-free setting.
    """
    from signalstack.engines.local import LocalEngine
    from signalstack.marketdata.simulator import SimConfig, simulate

    dates = full_sessions(days, last_day, calendar) if isinstance(days, int) else tuple(days)
    engine = LocalEngine(store, sessions=session_index(calendar), calendar=calendar)
    regimes: list[pd.DataFrame] = []
    anomalies: list[dict[str, Any]] = []
    trades = 0
    opens: list[int] = []
    for day in dates:
        day_seed = int(np.random.SeedSequence([seed, day.toordinal()]).generate_state(1)[0])
        market = simulate(
            SimConfig(
                seed=day_seed,
                symbols=tuple(symbols),
                date=day,
                trades_per_day=trades_per_day,
                random_walk=random_walk,
            )
        )
        frame = market.to_frame(labels=False)
        engine.process(frame)
        trades += len(frame)
        regimes.append(market.regime_frame())
        anomalies.extend(market.anomalies)
        opens.append(market.session_open_ns)
    engine.flush()
    first, last = min(opens), max(opens)
    return SimulatedData(
        store=store,
        symbols=tuple(symbols),
        days=dates,
        regimes=pd.concat(regimes, ignore_index=True),
        anomalies=anomalies,
        trades=trades,
        start=pd.Timestamp(first, tz="UTC"),
        end=pd.Timestamp(last + (390 + 1) * NS_PER_MINUTE, tz="UTC"),
    )


__all__ = [
    "LABEL_COLUMNS",
    "LabelSpec",
    "SimulatedData",
    "attach_labels",
    "full_sessions",
    "session_of",
    "simulate_into_store",
    "training_frame",
]
