"""The event-time state machine both engines run (the local engine across all symbols at once,
the Spark job per symbol inside ``applyInPandasWithState``), so their rows are the same by
construction — the parity test checks it end to end.

Semantics (one micro-batch at a time, the watermark ``W`` fixed for the batch):

- ``W`` = max event time seen in EARLIER batches, truncated to ms, minus the allowed lateness
  (Spark's ``withWatermark`` arithmetic); it never goes back; it starts at 0.
- A trade with ``ts_event < W`` is late: its bar was (or may have been) emitted already. It goes
  to the DLQ with reason ``late`` and changes nothing.
- Otherwise it is deduplicated on (symbol, exchange, trade_id) against the trades of bars not yet
  emitted (first seen wins; a duplicate of an emitted trade is late by definition), then kept if
  it is in a trading session.
- A minute ``[T − 1m, T)`` is final once ``T <= W``: its trades are aggregated (bars module), its
  features computed with the symbol's session history (definitions module) and both are emitted
  exactly once (append mode).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from signalstack.engines.dedup import PendingIdentities
from signalstack.features.bars import Minutes, Selection, TradeArrays, aggregate_selected
from signalstack.features.conditions import EligibilityRules
from signalstack.features.definitions import (
    LONGEST_WINDOW_MINUTES,
    VOLUME_RATIO_LOOKBACK,
    feature_frame,
)
from signalstack.features.sessions import NS_PER_MINUTE, SessionIndex
from signalstack.features.trades import (
    Prepared,
    SymbolCodes,
    TradeBatch,
    TradeIdBytes,
    prepare,
)

NS_PER_MS: Final = 1_000_000


@dataclass(slots=True)
class Pending:
    """Trades of minutes not yet final (in session, deduplicated)."""

    trades: TradeArrays
    exchange: npt.NDArray[np.int64]
    trade_id: TradeIdBytes  # zero-padded UTF-8 bytes (features.trades)
    ident: npt.NDArray[np.int64]

    @staticmethod
    def empty() -> Pending:
        return Pending(
            TradeArrays.empty(),
            np.zeros(0, np.int64),
            np.zeros(0, dtype="S8"),
            np.zeros(0, np.int64),
        )

    def __len__(self) -> int:
        return len(self.ident)

    def take(self, idx: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> Pending:
        return Pending(
            self.trades.take(idx), self.exchange[idx], self.trade_id[idx], self.ident[idx]
        )

    @staticmethod
    def concat(parts: list[Pending]) -> Pending:
        return Pending(
            TradeArrays.concat([p.trades for p in parts]),
            np.concatenate([p.exchange for p in parts]),
            np.concatenate([p.trade_id for p in parts]),
            np.concatenate([p.ident for p in parts]),
        )


@dataclass(slots=True)
class StepResult:
    """What one batch did: input row numbers that were late, and counts."""

    late_rows: npt.NDArray[np.intp]
    duplicates: int
    out_of_session: int
    unknown_conditions: int
    max_event_ns: int | None = None  # the batch's latest ts_event (all rows, late ones too)


class Emitted:
    """The bars and features one ``finalize`` emitted. Nothing emitted (most batches, at
    streaming sizes): the empty frames are built only if read (``n_bars`` reads no frame)."""

    __slots__ = ("_bars", "_features")

    def __init__(
        self, bars: pd.DataFrame | None = None, features: pd.DataFrame | None = None
    ) -> None:
        self._bars = bars
        self._features = features

    @property
    def bars(self) -> pd.DataFrame:
        if self._bars is None:
            self._bars = _empty_bars()
        return self._bars

    @property
    def features(self) -> pd.DataFrame:
        if self._features is None:
            self._features = _empty_features()
        return self._features

    @property
    def n_bars(self) -> int:
        return 0 if self._bars is None else len(self._bars)

    @property
    def n_features(self) -> int:
        return 0 if self._features is None else len(self._features)


class Watermark:
    """Event-time watermark with Spark's arithmetic (ms resolution, monotonic, starts at 0)."""

    def __init__(
        self, lateness_ms: int, value_ms: int = 0, max_event_ms: int | None = None
    ) -> None:
        self.lateness_ms = int(lateness_ms)
        self.value_ms = int(value_ms)
        self.max_event_ms = max_event_ms

    @property
    def ns(self) -> int:
        return self.value_ms * NS_PER_MS

    def observe(self, ts_ns: npt.NDArray[np.int64]) -> None:
        """Record a batch's event times (the watermark itself moves in :meth:`advance`)."""
        if len(ts_ns):
            self.observe_max(int(ts_ns.max()))

    def observe_max(self, max_ns: int) -> None:
        """Record a batch's latest event time."""
        m = max_ns // NS_PER_MS
        self.max_event_ms = m if self.max_event_ms is None else max(self.max_event_ms, m)

    def advance(self) -> int:
        """End of batch: W = max(W, max event ms − lateness); returns W in ns."""
        if self.max_event_ms is not None:
            self.value_ms = max(self.value_ms, self.max_event_ms - self.lateness_ms)
        return self.ns


class FeatureStateMachine:
    """Pending trades + per-symbol session history; see the module doc for the semantics."""

    def __init__(
        self,
        rules: EligibilityRules,
        sessions: SessionIndex,
        codes: SymbolCodes | None = None,
    ) -> None:
        self.rules = rules
        self.sessions = sessions
        self.codes = codes or SymbolCodes()
        # pending trades as chunks in arrival order: (arrays, the rows of them that are
        # pending — None: all); a batch's chunk is its prepared arrays plus the kept rows, so
        # rows that are final at the next watermark are never copied out of the batch
        self._chunks: list[tuple[Pending, npt.NDArray[np.intp] | None]] = []
        # their identities, sorted by hash: what dedup of the next batch reads
        self._ids = PendingIdentities()
        # their earliest event time: a batch that finalizes nothing looks at no chunk
        self._min_ts: int | None = None
        self.history = Minutes.empty()

    @property
    def pending(self) -> Pending:
        """Trades of minutes not yet final, in arrival order."""
        if not self._chunks:
            return Pending.empty()
        if len(self._chunks) > 1 or self._chunks[0][1] is not None:
            parts = [p if rows is None else p.take(rows) for p, rows in self._chunks]
            self._chunks = [(parts[0] if len(parts) == 1 else Pending.concat(parts), None)]
        return self._chunks[0][0]

    @pending.setter
    def pending(self, p: Pending) -> None:
        self._chunks = [(p, None)] if len(p) else []
        self._min_ts = int(p.trades.ts.min()) if len(p) else None
        self._ids.clear()
        self._ids.add(p.ident, p.trades.sym, p.exchange, p.trade_id, p.trades.ts)

    # -- one batch ---------------------------------------------------------------------------
    def ingest(self, batch: TradeBatch, watermark_ns: int) -> StepResult:
        """Classify a batch (pandas frame or Arrow batch/table) against the watermark; keep the
        on-time, new, in-session trades."""
        if len(batch) == 0:
            return StepResult(np.zeros(0, np.intp), 0, 0, 0)
        p = prepare(batch, self.rules, self.sessions, self.codes)
        return self.ingest_prepared(p, watermark_ns)

    def ingest_prepared(self, p: Prepared, watermark_ns: int) -> StepResult:
        t = p.trades
        late = t.ts < watermark_ns
        late_rows = np.flatnonzero(late)
        ident = p.ident
        if len(late_rows):
            # late rows take no part in dedup: their hash is replaced by its complement, which
            # no row with the same key has, and exact confirmation compares hashes too
            ident = ident.copy()
            ident[late_rows] = ~ident[late_rows]
        order = np.argsort(ident)  # by hash: for dedup, and the kept rows' run of identities
        dup = self._ids.duplicates(ident, (t.sym, p.exchange, p.trade_id), order)
        in_session = t.session >= 0
        fresh = ~dup
        if len(late_rows):
            fresh &= ~late
            dup &= ~late
        keep = fresh & in_session
        n_dup = int(np.count_nonzero(dup))
        n_keep = int(np.count_nonzero(keep))
        n_out = len(t) - len(late_rows) - n_dup - n_keep
        if n_keep:
            if n_keep == len(t):
                rows = None
                by_hash = order
            else:
                rows = np.flatnonzero(keep)
                # the kept rows by hash (late rows' complemented hashes are never kept, so
                # this is their order by the true hash)
                by_hash = order[keep[order]]
            kept_ts = t.ts[by_hash]
            self._ids.add_sorted(
                p.ident[by_hash], t.sym[by_hash], p.exchange[by_hash], p.trade_id[by_hash], kept_ts
            )
            low = int(kept_ts.min())
            self._min_ts = low if self._min_ts is None else min(self._min_ts, low)
            self._chunks.append((Pending(t, p.exchange, p.trade_id, p.ident), rows))
        return StepResult(late_rows, n_dup, n_out, p.unknown_conditions, int(t.ts.max()))

    def finalize(self, watermark_ns: int) -> Emitted:
        """Emit every minute with end <= watermark: bars and features, once."""
        # minute_end(ts) <= W  <=>  ts < W floored to the minute
        cut = (watermark_ns // NS_PER_MINUTE) * NS_PER_MINUTE
        if self._min_ts is None or self._min_ts >= cut:
            return Emitted()
        due_parts: list[Selection] = []
        rest: list[Pending] = []
        for c, rows in self._chunks:
            ts = c.trades.ts if rows is None else c.trades.ts[rows]
            due = ts < cut
            n_due = int(np.count_nonzero(due))
            if n_due == len(ts):
                due_parts.append((c.trades, rows))
            elif n_due == 0:
                rest.append(c if rows is None else c.take(rows))
            else:
                all_rows = np.arange(len(c), dtype=np.intp) if rows is None else rows
                due_parts.append((c.trades, all_rows[due]))
                rest.append(c.take(all_rows[~due]))
        if not due_parts:
            return Emitted()
        # the identities follow by event time: no rebuild
        self._ids.drop_before(cut)
        rest_p = Pending.concat(rest) if len(rest) > 1 else rest[0] if rest else None
        self._chunks = [(rest_p, None)] if rest_p is not None and len(rest_p) else []
        self._min_ts = int(rest_p.trades.ts.min()) if self._chunks and rest_p is not None else None
        # pending rows are in session by construction (ingest keeps no other)
        return self._emit(aggregate_selected(due_parts, in_session=True), self.codes.names)

    def _emit(self, new_minutes: Minutes, names: npt.NDArray[np.object_]) -> Emitted:
        hist = self.history
        n_hist = len(hist)
        allm = Minutes.concat([hist, new_minutes]) if n_hist else new_minutes
        is_new = np.zeros(len(allm), dtype=bool)
        is_new[n_hist:] = True
        order = np.lexsort((allm.ts, allm.sym))
        allm = allm.take(order)
        is_new = is_new[order]
        feats = feature_frame(allm, names, is_new)
        bars = allm.take(is_new).bar_frame(names)
        self.history = _history(allm)
        return Emitted(bars, feats)


def _history(m: Minutes) -> Minutes:
    """What the next emission needs of ``m`` (sorted by sym, ts), per symbol: rows of its
    latest session only, and of those the rows a later bar's features read (definitions:
    ``LONGEST_WINDOW_MINUTES`` of minute rows before its last row, the last
    ``VOLUME_RATIO_LOOKBACK`` bars, and rows between) — so an emission's cost does not grow
    with the session, and the values are those of the whole session: every row a feature reads
    is kept, and a symbol with fewer bars keeps all of them (volume_ratio counts them)."""
    n = len(m)
    if n == 0:
        return m
    first = np.ones(n, dtype=bool)
    first[1:] = m.sym[1:] != m.sym[:-1]
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], n)  # exclusive
    gid = np.repeat(np.arange(len(starts)), ends - starts)
    last = ends - 1
    in_session = m.session == m.session[last][gid]
    in_window = m.ts > (m.ts[last] - LONGEST_WINDOW_MINUTES * NS_PER_MINUTE)[gid]
    bar = m.has_bar.astype(np.int64)
    bars_upto = np.cumsum(bar)  # bars at or before each row
    bars_from = bars_upto[last][gid] - bars_upto + bar  # bars at or after each row (same symbol)
    keep = in_session & (in_window | (bars_from <= VOLUME_RATIO_LOOKBACK))
    return m if keep.all() else m.take(keep)


@cache
def _empty_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    names = np.zeros(0, dtype=object)
    return Minutes.empty().bar_frame(names), feature_frame(Minutes.empty(), names)


def _empty_bars() -> pd.DataFrame:
    """A batch that finalizes nothing (most, at streaming sizes): a copy of one template, not
    the whole feature computation on empty arrays (~0.9 ms)."""
    return _empty_frames()[0].copy(deep=False)


def _empty_features() -> pd.DataFrame:
    return _empty_frames()[1].copy(deep=False)


__all__ = [
    "Emitted",
    "FeatureStateMachine",
    "Pending",
    "StepResult",
    "Watermark",
]
