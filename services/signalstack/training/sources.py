"""Training data sources behind one interface (``signalstack train --data-source …``).

Every source returns the same kind of point-in-time training frame (docs/MODELS.md): ``symbol,
ts``, its feature columns, ``feature_set_version``, ``session``, then
:data:`~signalstack.training.frames.LABEL_COLUMNS`, ordered by (symbol, ts), with the labels of
:mod:`signalstack.training.labels` attached at the feature rows' own keys
(:func:`~signalstack.training.frames.attach_labels`: only bars after ``T``; missing across the
session close).

- ``store`` (:class:`StoreSource`): feature set 1 rows and bars already in a store.
- ``simulator`` (:class:`SimulatorSource`): seeded simulated sessions run through the local
  stream engine into a store (feature set 1), with the simulator's ground truth (regimes,
  anomalies) from :meth:`~TrainingSource.truth`.
- ``yfinance`` (:class:`YFinanceTrainingSource`): 1-minute bars through the real yfinance code
  and feature set 2 (:mod:`signalstack.features.bar_features`): bars carry no trades, so these
  features are a different feature set and every row says so in ``feature_set_version``.
"""

from __future__ import annotations

import datetime as dt
import weakref
from collections.abc import Sequence
from typing import Any, Final, Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from signalstack.features.bar_features import (
    BAR_FEATURE_SET_VERSION,
    bar_features,
)
from signalstack.features.columns import FEATURE_SET_VERSION
from signalstack.features.sessions import SessionIndex, session_index
from signalstack.marketdata.yfinance_source import COLUMNS as YAHOO_COLUMNS
from signalstack.marketdata.yfinance_source import YFinanceSource
from signalstack.store.base import Store, TimeLike, to_utc
from signalstack.training.frames import (
    LabelSpec,
    SimulatedData,
    attach_labels,
    simulate_into_store,
    training_frame,
)

SourceName = Literal["store", "simulator", "yfinance"]
SOURCE_NAMES: Final[tuple[SourceName, ...]] = ("store", "simulator", "yfinance")


@runtime_checkable
class TrainingSource(Protocol):
    """Where training frames come from. ``feature_set_version``: the feature set of every row
    :meth:`frame` returns (a model trained on them is fed that set only)."""

    name: str
    feature_set_version: int

    def frame(
        self,
        symbols: Sequence[str] | None,
        start: TimeLike | None,
        end: TimeLike | None,
        *,
        labels: LabelSpec | None = None,
        sessions: SessionIndex | None = None,
        as_of: TimeLike | None = None,
    ) -> pd.DataFrame:
        """Features and labels for the decision times ``start <= T < end`` (and ``T <= as_of``,
        the training cut-off: nothing stamped after it is read)."""
        ...

    def truth(self) -> SimulatedData | None:
        """The ground truth behind the data (the simulator's regimes and anomalies), if any."""
        ...

    def close(self) -> None:
        """Release what the source opened itself (never a store it was given)."""
        ...


def _required(value: Any, what: str, source: str) -> Any:
    if value is None or (isinstance(value, (list, tuple)) and not value):
        raise ValueError(f"the {source} data source needs {what}")
    return value


class StoreSource:
    """Feature set 1 rows and bars already in a store (:func:`training_frame`)."""

    name: str = "store"
    feature_set_version: int = FEATURE_SET_VERSION

    def __init__(self, store: Store) -> None:
        self.store = store

    def frame(
        self,
        symbols: Sequence[str] | None,
        start: TimeLike | None,
        end: TimeLike | None,
        *,
        labels: LabelSpec | None = None,
        sessions: SessionIndex | None = None,
        as_of: TimeLike | None = None,
    ) -> pd.DataFrame:
        return training_frame(
            self.store,
            _required(symbols, "symbols", self.name),
            _required(start, "a start", self.name),
            _required(end, "an end", self.name),
            as_of=as_of,
            labels=labels,
            sessions=sessions,
            feature_set_version=self.feature_set_version,
        )

    def truth(self) -> SimulatedData | None:
        return None

    def close(self) -> None:
        """The store belongs to the caller: left open."""


class SimulatorSource:
    """Seeded simulated sessions → the local stream engine → a store → :func:`training_frame`.

    Simulates once, on first use. ``store``: where to put the data (left open: the caller's);
    default a private in-memory DuckDB store, closed by :meth:`close` (or when the source is
    garbage-collected). ``random_walk``: the simulator's driftless, regime-free setting (every
    minute calm). Same arguments, same frame.
    """

    name: str = "simulator"
    feature_set_version: int = FEATURE_SET_VERSION

    def __init__(
        self,
        days: int | Sequence[dt.date] = 2,
        symbols: Sequence[str] = ("AAPL", "MSFT", "NVDA"),
        seed: int = 7,
        trades_per_day: int = 10_000,
        random_walk: bool = False,
        store: Store | None = None,
        *,
        last_day: dt.date = dt.date(2025, 11, 20),
    ) -> None:
        if not symbols:
            raise ValueError("the simulator data source needs at least one symbol")
        self.days = days
        self.symbols = tuple(symbols)
        self.seed = seed
        self.trades_per_day = trades_per_day
        self.random_walk = random_walk
        self.last_day = last_day
        self._given = store
        self._store: Store | None = store
        self._data: SimulatedData | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def data(self) -> SimulatedData:
        """The simulated sessions (simulated now if not yet)."""
        if self._data is None:
            store = self._store
            if store is None:
                from signalstack.store.duckdb import DuckDBStore

                store = DuckDBStore()
                self._finalizer = weakref.finalize(self, store.close)
                store.migrate()
                self._store = store
            self._data = simulate_into_store(
                store,
                days=self.days,
                symbols=self.symbols,
                seed=self.seed,
                trades_per_day=self.trades_per_day,
                last_day=self.last_day,
                random_walk=self.random_walk,
            )
        return self._data

    def frame(
        self,
        symbols: Sequence[str] | None = None,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        labels: LabelSpec | None = None,
        sessions: SessionIndex | None = None,
        as_of: TimeLike | None = None,
    ) -> pd.DataFrame:
        """``symbols`` None: every simulated symbol; ``start``/``end`` None: the whole simulated
        range."""
        chosen = tuple(symbols) if symbols else self.symbols
        unknown = sorted(set(chosen) - set(self.symbols))
        if unknown:
            raise ValueError(
                f"symbols not simulated: {', '.join(unknown)} "
                f"(the simulator source has {', '.join(self.symbols)})"
            )
        data = self.data()
        return training_frame(
            data.store,
            chosen,
            data.start if start is None else start,
            data.end if end is None else end,
            as_of=as_of,
            labels=labels,
            sessions=sessions,
            feature_set_version=self.feature_set_version,
        )

    def truth(self) -> SimulatedData:
        return self.data()

    def close(self) -> None:
        """Close the private store (a given store is left open); the data is gone with it."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
            self._store = None
            self._data = None


class YFinanceTrainingSource:
    """1-minute bars through the real yfinance code → feature set 2 → the same labels.

    ``client``: a :class:`~signalstack.marketdata.yfinance_source.YFinanceSource` (its HTTP
    session, timeout, pre/post-market setting); default one with yfinance's own session.
    ``now``: the clock Yahoo's history limits and its live, unfinished bar are judged against
    (default: the wall clock). Yahoo serves 1-minute bars for the last ~30 days only; an older
    range fails with :class:`~signalstack.marketdata.errors.HistoryLimitError`.
    """

    name: str = "yfinance"
    feature_set_version: int = BAR_FEATURE_SET_VERSION

    def __init__(
        self,
        client: YFinanceSource | None = None,
        interval: str = "1m",
        *,
        now: dt.datetime | None = None,
    ) -> None:
        if interval != "1m":
            raise ValueError(
                f"interval {interval!r}: feature set 2 and the labels are defined on 1-minute "
                "bars; use '1m'"
            )
        self.client = client if client is not None else YFinanceSource()
        self.interval = interval
        self.now = now

    def bars(
        self, symbols: Sequence[str], start: TimeLike, end: TimeLike, sessions: SessionIndex
    ) -> pd.DataFrame:
        """Yahoo's bars stamped from the open of ``start``'s session to ``end`` (inclusive): a
        feature row reads its session from the open, whatever ``start`` the caller picks."""
        lo, hi = to_utc(start), to_utc(end)
        s = int(sessions.session_start(np.array([lo.value - 1], dtype=np.int64))[0])
        if s >= 0:  # lo is a bar end inside a session: fetch that session from its open
            lo = min(lo, pd.Timestamp(s, tz="UTC"))
        if hi <= lo:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in YAHOO_COLUMNS})
        bars = self.client.bars_many(
            list(symbols),
            lo.to_pydatetime(),
            hi.to_pydatetime(),
            self.interval,
            now=self.now,
        )
        return bars[bars["ts"] <= hi].reset_index(drop=True)

    def frame(
        self,
        symbols: Sequence[str] | None,
        start: TimeLike | None,
        end: TimeLike | None,
        *,
        labels: LabelSpec | None = None,
        sessions: SessionIndex | None = None,
        as_of: TimeLike | None = None,
    ) -> pd.DataFrame:
        chosen = list(_required(symbols, "symbols", self.name))
        lo = to_utc(_required(start, "a start", self.name))
        hi = to_utc(_required(end, "an end", self.name))
        spec = labels or LabelSpec()
        sessions = sessions if sessions is not None else session_index()
        horizon = pd.Timedelta(minutes=spec.horizon_minutes)
        cut = to_utc(as_of) if as_of is not None else hi + horizon
        bars = self.bars(chosen, lo, min(hi + horizon, cut), sessions)
        feats = bar_features(bars, sessions)
        keep = (feats["ts"] >= lo) & (feats["ts"] < hi) & (feats["ts"] <= cut)
        return attach_labels(feats[keep], bars, spec, sessions, cut)

    def truth(self) -> SimulatedData | None:
        return None

    def close(self) -> None:
        """Nothing to release (the HTTP session belongs to the client)."""


def make_source(name: SourceName, **kwargs: Any) -> TrainingSource:
    """The source called ``name`` (``store``, ``simulator`` or ``yfinance``), built with
    ``kwargs`` (its constructor's arguments); a clear ``ValueError`` for another name."""
    if name == "store":
        return StoreSource(**kwargs)
    if name == "simulator":
        return SimulatorSource(**kwargs)
    if name == "yfinance":
        return YFinanceTrainingSource(**kwargs)
    raise ValueError(f"unknown data source {name!r}; expected one of {', '.join(SOURCE_NAMES)}")


__all__ = [
    "SOURCE_NAMES",
    "SimulatorSource",
    "SourceName",
    "StoreSource",
    "TrainingSource",
    "YFinanceTrainingSource",
    "make_source",
]
