"""The session cache: each (symbol, feature set)'s newest rows of its current session in
memory, fed by the live feed (and completed from the store by the live predictor at a symbol's
first fed row). The live predictor reads the LSTM's sequences from it; ``/predict`` by symbol
(no ``as_of``) answers from it instead of reading the store per request. It answers only what
the store would answer (see :class:`SessionCache`), and only for symbols the feed keeps current:
an entry exists only for a symbol the feed delivered since the last rebalance (the feed clears
the cache on every revoke and assignment), never for one a request read from the store."""

from __future__ import annotations

import datetime as dt
import threading
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from signalstack.features.columns import FEATURE_COLUMNS

if TYPE_CHECKING:
    from signalstack.serving.feeds import FeatureRow
    from signalstack.serving.repository import LoadedModel

F8 = npt.NDArray[np.float64]
_NY: Final = "America/New_York"


def session_of(ts: pd.Timestamp) -> dt.date:
    """A row's trading session: its New York calendar date (a session never crosses midnight)."""
    return ts.tz_convert(_NY).date()


def cacheable(model: LoadedModel) -> bool:
    """The cache keeps ``FEATURE_COLUMNS``: a model reading other columns is not served from it."""
    return tuple(model.bundle.meta.feature_columns) == tuple(FEATURE_COLUMNS)


@dataclass
class _Entry:
    session: dt.date
    ts: list[int] = field(default_factory=list)  # ns, ascending
    values: list[F8] = field(default_factory=list)
    complete: bool = False  # holds every row of the session up to its newest

    def put(self, ts: int, values: F8) -> None:
        i = bisect_right(self.ts, ts)
        if i and self.ts[i - 1] == ts:  # a replayed row replaces the one with its key
            self.values[i - 1] = values
            return
        self.ts.insert(i, ts)
        self.values.insert(i, values)


class SessionCache:
    """The newest ``capacity`` rows of each (symbol, feature_set_version)'s current session.

    :meth:`rows` answers only when it can answer exactly as the store would for the newest
    rows: it holds at least ``limit`` rows of the session, or every row of the session (it saw
    the session begin, or the store said it had fewer). Otherwise None: read the store (and
    :meth:`seed` a fed entry with the answer). Entries are made by :meth:`add` (the feed) only;
    :meth:`clear` forgets them all (a rebalance: the feed no longer delivers every row of the
    symbols it held, and a symbol it gets back has a hole where another replica had it)."""

    def __init__(self, capacity: int = 64) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._entries: dict[tuple[str, int], _Entry] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, row: FeatureRow) -> None:
        session = session_of(row.ts)
        key = (row.symbol, row.feature_set_version)
        with self._lock:
            e = self._entries.get(key)
            if e is None or session > e.session:
                # a tracked symbol's next session starts with this row (the feed is in order
                # per symbol); a symbol first seen now may have older rows of it elsewhere
                tracked = e is not None and (e.complete or len(e.ts) >= self.capacity)
                e = self._entries[key] = _Entry(session, complete=tracked)
            elif session < e.session:
                return  # a replay of an older session
            elif len(e.ts) >= self.capacity and row.ts.value < e.ts[0]:
                return  # older than the newest rows kept: it would go at once
            e.put(int(row.ts.value), row.values)
            self._trim(e)

    def clear(self) -> None:
        """Forget every entry (the feed's assignment changed)."""
        with self._lock:
            self._entries.clear()

    def seed(self, symbol: str, fsv: int, frame: pd.DataFrame, limit: int) -> None:
        """Merge the store's answer for the symbol's newest ``limit`` rows (oldest first) into
        the symbol's fed entry of the same session; nothing without one (a symbol the feed does
        not deliver would be answered from this copy forever, nothing keeping it current)."""
        if frame.empty:
            return
        ts = pd.DatetimeIndex(frame["ts"])
        session = session_of(ts[-1])
        values = frame.loc[:, list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64)
        with self._lock:
            e = self._entries.get((symbol, fsv))
            if e is None or e.session != session:
                return
            for t, v in zip(ts.asi8.tolist(), values, strict=True):
                i = bisect_right(e.ts, t)
                if not (i and e.ts[i - 1] == t):  # the feed's copy of a row wins
                    e.put(t, v)
            e.complete = e.complete or len(frame) < limit
            self._trim(e)

    def mark_complete(self, symbol: str, fsv: int, session: dt.date) -> None:
        """The cache holds every row of ``session`` (the store had none before them)."""
        with self._lock:
            e = self._entries.get((symbol, fsv))
            if e is not None and e.session == session and len(e.ts) < self.capacity:
                e.complete = True

    def _trim(self, e: _Entry) -> None:
        extra = len(e.ts) - self.capacity
        if extra > 0:
            del e.ts[:extra], e.values[:extra]
            e.complete = False

    def rows(
        self, symbol: str, fsv: int, limit: int, upto: pd.Timestamp | None = None,
        *, partial: bool = False,
    ) -> tuple[F8, pd.Timestamp] | None:  # fmt: skip
        """The newest ``limit`` rows (``FEATURE_COLUMNS`` order, oldest first) at or before
        ``upto`` and the newest row's time; None when the cache cannot answer exactly
        (``partial``: answer with what it has)."""
        with self._lock:
            e = self._entries.get((symbol, fsv))
            if e is None:
                return None
            n = len(e.ts) if upto is None else bisect_right(e.ts, int(upto.value))
            if n == 0 or (n < limit and not (e.complete or partial)):
                return None
            picked = e.values[max(0, n - limit) : n]
            newest = e.ts[n - 1]
        return np.vstack(picked), pd.Timestamp(newest, tz="UTC")


__all__ = ["SessionCache", "cacheable", "session_of"]
