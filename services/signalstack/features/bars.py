"""Minute aggregation: eligible, in-session, deduplicated trades → one row per (symbol, minute).

A minute row covers trades with ``ts_event`` in [T − 1m, T) and is stamped with its END ``T``.
Every minute with at least one in-session trade gets a row (its sums feed the trade-level
windows); ``has_bar`` marks the minutes with at least one last-eligible trade — only those are
bars (as Polygon's own minute bars) and only those get feature rows.

Bar fields, by the eligibility flags (see :mod:`signalstack.features.conditions`):

- ``open``/``close``: price of the first/last LAST-eligible trade by (ts_event, sequence);
- ``high``/``low``: max/min price over HIGH_LOW-eligible trades (and the LAST-eligible ones,
  which the SIP rules make a subset; this keeps open/close inside [low, high] for any table);
- ``volume``/``trade_count``: sum of sizes / number of VOLUME-eligible trades;
- ``vwap``: Σ price·size / Σ size over VWAP-eligible trades (NaN if none).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from signalstack.features.conditions import HIGH_LOW, LAST, VOLUME, VWAP
from signalstack.features.sessions import NS_PER_MINUTE

F8 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int64]


@dataclass(slots=True)
class TradeArrays:
    """Column arrays of prepared trades (same length). ``sym`` is an int code (see engines)."""

    sym: npt.NDArray[np.int32]
    ts: I8  # ts_event, ns UTC
    seq: I8
    price: F8
    size: F8
    flags: npt.NDArray[np.uint8]
    session: I8  # start of the trade's session (ns), -1 outside every session

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, idx: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> TradeArrays:
        return TradeArrays(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @staticmethod
    def concat(parts: list[TradeArrays]) -> TradeArrays:
        return TradeArrays(
            **{
                f.name: np.concatenate([getattr(p, f.name) for p in parts])
                for f in fields(TradeArrays)
            }
        )

    @staticmethod
    def empty() -> TradeArrays:
        return TradeArrays(
            sym=np.zeros(0, np.int32),
            ts=np.zeros(0, np.int64),
            seq=np.zeros(0, np.int64),
            price=np.zeros(0, np.float64),
            size=np.zeros(0, np.float64),
            flags=np.zeros(0, np.uint8),
            session=np.zeros(0, np.int64),
        )


@dataclass(slots=True)
class Minutes:
    """One row per (symbol, minute) with in-session trades, sorted by (sym, ts)."""

    sym: npt.NDArray[np.int32]
    ts: I8  # minute END, ns
    session: I8
    has_bar: npt.NDArray[np.bool_]
    open: F8
    high: F8
    low: F8
    close: F8
    volume: F8
    trade_count: I8
    vwap_pv: F8  # Σ price·size over VWAP-eligible trades
    vwap_v: F8  # Σ size over VWAP-eligible trades

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, idx: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> Minutes:
        return Minutes(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @staticmethod
    def concat(parts: list[Minutes]) -> Minutes:
        return Minutes(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Minutes)}
        )

    @staticmethod
    def empty() -> Minutes:
        return Minutes(
            sym=np.zeros(0, np.int32),
            ts=np.zeros(0, np.int64),
            session=np.zeros(0, np.int64),
            has_bar=np.zeros(0, bool),
            open=np.zeros(0),
            high=np.zeros(0),
            low=np.zeros(0),
            close=np.zeros(0),
            volume=np.zeros(0),
            trade_count=np.zeros(0, np.int64),
            vwap_pv=np.zeros(0),
            vwap_v=np.zeros(0),
        )

    def sorted(self) -> Minutes:
        order = np.lexsort((self.ts, self.sym))
        return self.take(order)

    def bar_frame(self, symbols: npt.NDArray[np.object_]) -> pd.DataFrame:
        """The ``ohlcv_1m`` rows (bars only); ``symbols[code]`` names each symbol code."""
        b = self.take(self.has_bar)
        with np.errstate(invalid="ignore", divide="ignore"):
            vwap = np.where(b.vwap_v > 0, b.vwap_pv / np.where(b.vwap_v > 0, b.vwap_v, 1.0), np.nan)
        return pd.DataFrame(
            {
                "symbol": symbols[b.sym] if len(b) else np.zeros(0, dtype=object),
                "ts": utc_times(b.ts),
                "open": b.open,
                "high": b.high,
                "low": b.low,
                "close": b.close,
                "volume": b.volume,
                "vwap": vwap,
                "trade_count": b.trade_count,
            },
            copy=False,  # every column is a fresh array (taken from this one)
        )


MINUTE_FIELDS: Final = tuple(f.name for f in fields(Minutes))


def utc_times(ns: I8) -> pd.DatetimeIndex:
    """ns since the epoch → UTC timestamps: what ``pd.to_datetime(ns, utc=True)`` gives, at a
    fifth of its fixed cost (a frame per emitted batch pays it)."""
    return pd.DatetimeIndex(np.asarray(ns, dtype=np.int64).view("M8[ns]"), tz="UTC")


def minute_end(ts: I8) -> I8:
    """End (ns) of the 1-minute bar [T − 1m, T) containing each timestamp."""
    return (ts // NS_PER_MINUTE + 1) * NS_PER_MINUTE


def sort_order(sym: npt.NDArray[np.int32], ts: I8, seq: I8) -> npt.NDArray[np.intp]:
    """Order by (sym, ts_event, sequence); stable, so exact ties keep arrival order."""
    order = _packed_order(sym, ts)
    return np.lexsort((seq, ts, sym)) if order is None else order


def _packed_order(sym: npt.NDArray[np.int32], ts: I8) -> npt.NDArray[np.intp] | None:
    """Order by (sym, ts_event) when no two rows tie on it, else None (the caller then breaks
    ties by sequence, then arrival, with a lexsort).

    One value sort of a packed int64 key — symbol code in the top bits, time offset, then the
    row number in the low bits, so the sorted keys carry the permutation — when the bits allow;
    otherwise a stable argsort of (symbol, time offset).
    """
    n = len(ts)
    if n == 0:
        return np.zeros(0, dtype=np.intp)
    t0 = int(ts.min())
    span = int(ts.max()) - t0
    nsym = int(sym.max()) + 1
    if int(sym.min()) < 0:
        return None
    row_bits = max(1, (n - 1).bit_length())
    ts_bits = max(1, span.bit_length())
    if row_bits + ts_bits + max(1, (nsym - 1).bit_length()) <= 63:
        packed = sym.astype(np.int64) << (ts_bits + row_bits)
        packed |= (ts - t0) << row_bits
        packed |= np.arange(n, dtype=np.int64)
        packed.sort()
        key = packed >> row_bits
        if (key[1:] == key[:-1]).any():
            return None
        packed &= (1 << row_bits) - 1
        return packed.astype(np.intp, copy=False)
    if span < (1 << 52) and nsym <= (1 << 10):
        key = (sym.astype(np.int64) << 52) | (ts - t0)
        order = np.argsort(key, kind="stable")
        k = key[order]
        return None if (k[1:] == k[:-1]).any() else order
    return None


def sort_trades(t: TradeArrays) -> TradeArrays:
    """Order by (sym, ts_event, sequence); stable, so exact ties keep arrival order."""
    return t.take(sort_order(t.sym, t.ts, t.seq))


Selection = tuple[TradeArrays, "npt.NDArray[np.intp] | None"]


def aggregate_minutes(t: TradeArrays, *, presorted: bool = False) -> Minutes:
    """Aggregate in-session trades (``session >= 0``) into minute rows. Pure, vectorised."""
    if presorted:
        keep = t.session >= 0
        if not keep.all():
            t = t.take(keep)
        return _aggregate_sorted(t.sym, t.ts, t.price, t.size, t.flags, t.session, None)
    return aggregate_selected([(t, None)])


def aggregate_selected(parts: list[Selection], *, in_session: bool = False) -> Minutes:
    """``aggregate_minutes`` of the concatenation of ``t.take(rows)`` over ``parts`` (rows None:
    all), in that order — without materialising the selection: only symbol and time are
    gathered for the sort, the rest is gathered once, already in sorted order.
    ``in_session``: the caller guarantees every selected row is in a session (no check)."""
    sels: list[npt.NDArray[np.intp] | None] = []
    for t, rows in parts:
        if in_session:
            sels.append(rows)
            continue
        ok = t.session >= 0 if rows is None else t.session[rows] >= 0
        if rows is None:
            sels.append(None if ok.all() else np.flatnonzero(ok))
        else:
            sels.append(rows if ok.all() else rows[ok])
    if len(parts) == 1:
        src, sel = parts[0][0], sels[0]
        sym = src.sym if sel is None else src.sym[sel]
        ts = src.ts if sel is None else src.ts[sel]
        price, size, flags, session = src.price, src.size, src.flags, src.session
    else:
        syms, tss, idx = [], [], []
        base = 0
        for (t, _), r in zip(parts, sels, strict=True):
            syms.append(t.sym if r is None else t.sym[r])
            tss.append(t.ts if r is None else t.ts[r])
            idx.append(np.arange(base, base + len(t), dtype=np.intp) if r is None else r + base)
            base += len(t)
        sym, ts, sel = np.concatenate(syms), np.concatenate(tss), np.concatenate(idx)
        price, size, flags, session = (
            np.concatenate([getattr(t, c) for t, _ in parts])
            for c in ("price", "size", "flags", "session")
        )
    if len(sym) == 0:
        return Minutes.empty()
    order = _packed_order(sym, ts)
    if order is None:  # exact (sym, ts) ties: break them by sequence, then arrival
        seqs = [t.seq if r is None else t.seq[r] for (t, _), r in zip(parts, sels, strict=True)]
        order = np.lexsort((np.concatenate(seqs), ts, sym))
    rows = order if sel is None else sel[order]
    return _aggregate_sorted(
        sym[order], ts[order], price[rows], size[rows], flags[rows], session, rows
    )


def _aggregate_sorted(
    sym: npt.NDArray[np.int32],
    ts: I8,
    price: F8,
    size: F8,
    flags: npt.NDArray[np.uint8],
    session: I8,
    session_rows: npt.NDArray[np.intp] | None,
) -> Minutes:
    """Minute rows of in-session trades sorted by (sym, ts, sequence); the session of sorted
    row ``i`` is ``session[session_rows[i]]`` (``session[i]`` when ``session_rows`` is None)."""
    n = len(ts)
    if n == 0:
        return Minutes.empty()
    end = minute_end(ts)
    change = np.empty(n, dtype=bool)
    change[0] = True
    np.not_equal(end[1:], end[:-1], out=change[1:])
    change[1:] |= sym[1:] != sym[:-1]
    starts = np.flatnonzero(change)
    vol = (flags & VOLUME) != 0
    last = (flags & LAST) != 0
    hl = ((flags & HIGH_LOW) != 0) | last
    vw = (flags & VWAP) != 0
    volume = np.add.reduceat(np.where(vol, size, 0.0), starts)
    count = np.add.reduceat(vol.astype(np.int64), starts)
    pv = np.add.reduceat(np.where(vw, price * size, 0.0), starts)
    v = np.add.reduceat(np.where(vw, size, 0.0), starts)
    high = np.maximum.reduceat(np.where(hl, price, -np.inf), starts)
    low = np.minimum.reduceat(np.where(hl, price, np.inf), starts)
    pos = np.arange(n, dtype=np.int64)
    first = np.minimum.reduceat(np.where(last, pos, n), starts)
    lastpos = np.maximum.reduceat(np.where(last, pos, -1), starts)
    has_bar = lastpos >= 0
    first_c = np.where(has_bar, first, 0)
    last_c = np.where(has_bar, lastpos, 0)
    return Minutes(
        sym=sym[starts],
        ts=end[starts],
        session=session[starts if session_rows is None else session_rows[starts]],
        has_bar=has_bar,
        open=np.where(has_bar, price[first_c], np.nan),
        high=np.where(has_bar, high, np.nan),
        low=np.where(has_bar, low, np.nan),
        close=np.where(has_bar, price[last_c], np.nan),
        volume=volume,
        trade_count=count,
        vwap_pv=pv,
        vwap_v=v,
    )
