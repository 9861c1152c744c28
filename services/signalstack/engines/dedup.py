"""The identities of the pending trades, kept sorted by hash, so a micro-batch is deduplicated
against them without gathering or re-hashing the pending trades each batch.

Same answer as :func:`signalstack.features.trades.duplicate_mask` with the pending trades as
``prior`` (first seen wins; a hash match is only a candidate, confirmed on the exact key):
for a batch of ``n`` rows against ``p`` pending ones the work is a sort of the ``n`` hashes and
binary searches of them in a few sorted runs, ``O(n log p)`` amortized — instead of hashing all
``n + p`` every batch, which made small batches slow (``p`` is a minute or more of trades).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from signalstack.features.trades import TradeIdBytes, exact_repeats


@dataclass(slots=True)
class _Run:
    """Identities sorted by hash, with the key columns and event time in the same order."""

    ident: npt.NDArray[np.int64]
    sym: npt.NDArray[np.int32]
    exchange: npt.NDArray[np.int64]
    trade_id: TradeIdBytes
    ts: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.ident)

    def take(self, idx: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> _Run:
        return _Run(
            self.ident[idx], self.sym[idx], self.exchange[idx], self.trade_id[idx], self.ts[idx]
        )

    @staticmethod
    def merge(a: _Run, b: _Run) -> _Run:
        both = np.concatenate([a.ident, b.ident])
        order = np.argsort(both, kind="stable")  # timsort: one merge of the two sorted runs
        return _Run(
            both[order],
            np.concatenate([a.sym, b.sym])[order],
            np.concatenate([a.exchange, b.exchange])[order],
            np.concatenate([a.trade_id, b.trade_id])[order],
            np.concatenate([a.ts, b.ts])[order],
        )


class PendingIdentities:
    """(hash, symbol, exchange, trade_id bytes, ts_event) of the pending trades as a few runs
    sorted by hash, of geometrically decreasing size (a batch adds a run; a run is merged into
    the one before it while that one is at most twice its size), so a batch costs
    ``O(n log p)``, not ``O(p)``. Rows leave by event time when their minute is final
    (:meth:`drop_before`)."""

    def __init__(self) -> None:
        self._runs: list[_Run] = []

    def __len__(self) -> int:
        return sum(len(r) for r in self._runs)

    @property
    def runs(self) -> int:
        return len(self._runs)

    def clear(self) -> None:
        self._runs = []

    def add(
        self,
        ident: npt.NDArray[np.int64],
        sym: npt.NDArray[np.int32],
        exchange: npt.NDArray[np.int64],
        trade_id: TradeIdBytes,
        ts: npt.NDArray[np.int64],
        order: npt.NDArray[np.intp] | None = None,
    ) -> None:
        """Insert rows (already deduplicated); ``order``: their order by hash, if known."""
        if len(ident) == 0:
            return
        if order is None:
            order = np.argsort(ident)
        self.add_sorted(ident[order], sym[order], exchange[order], trade_id[order], ts[order])

    def add_sorted(
        self,
        ident: npt.NDArray[np.int64],
        sym: npt.NDArray[np.int32],
        exchange: npt.NDArray[np.int64],
        trade_id: TradeIdBytes,
        ts: npt.NDArray[np.int64],
    ) -> None:
        """Insert rows (already deduplicated) given in hash order."""
        if len(ident) == 0:
            return
        runs = self._runs
        runs.append(_Run(ident, sym, exchange, trade_id, ts))
        while len(runs) > 1 and len(runs[-2]) <= 2 * len(runs[-1]):
            last = runs.pop()
            runs[-1] = _Run.merge(runs[-1], last)

    def drop_before(self, cut_ns: int) -> None:
        """Forget the rows with ``ts_event < cut_ns`` (their minutes were finalized)."""
        kept: list[_Run] = []
        for r in self._runs:
            keep = r.ts >= cut_ns
            if keep.all():
                kept.append(r)
            elif keep.any():
                kept.append(r.take(keep))
        self._runs = kept

    def duplicates(
        self,
        ident: npt.NDArray[np.int64],
        keys: tuple[npt.NDArray[np.int32], npt.NDArray[np.int64], TradeIdBytes],
        order: npt.NDArray[np.intp] | None = None,
    ) -> npt.NDArray[np.bool_]:
        """True where a row's identity (hash + exact ``(sym, exchange, trade_id)``) is pending
        or appeared earlier in this batch; ``order``: the rows' order by hash, if known."""
        n = len(ident)
        out = np.zeros(n, dtype=bool)
        if n == 0:
            return out
        if order is None:
            order = np.argsort(ident)
        hs = ident[order]
        # candidates, by position in hash order: every row of a hash seen twice in the batch,
        # and every row of a hash some run holds (the exact check below decides)
        wanted = np.zeros(n, dtype=bool)
        if n > 1:
            same = hs[1:] == hs[:-1]
            wanted[1:] = same
            wanted[:-1] |= same
        prior: list[tuple[_Run, npt.NDArray[np.intp]]] = []
        for r in self._runs:
            pos = np.searchsorted(r.ident, hs)
            np.minimum(pos, len(r) - 1, out=pos)
            hit = r.ident[pos] == hs
            if hit.any():
                wanted |= hit
                first, h = pos[hit], hs[hit]
                end = np.searchsorted(r.ident, h, side="right")
                # each hit's rows in the run (more than one only for a 64-bit collision)
                prior.append((r, first if (end - first == 1).all() else _ranges(first, end)))
        if not wanted.any():
            return out
        rows = np.sort(order[wanted])  # in batch order, after the pending ones (any order:
        # they all precede the batch; one pending row listed twice changes nothing)
        sym, exchange, trade_id = keys
        cols: list[npt.NDArray[Any]] = [
            np.concatenate([*(r.sym[i] for r, i in prior), sym[rows]]),
            np.concatenate([*(r.exchange[i] for r, i in prior), exchange[rows]]),
            np.concatenate([*(r.trade_id[i] for r, i in prior), trade_id[rows]]),
        ]
        h = np.concatenate([*(r.ident[i] for r, i in prior), ident[rows]])
        exact = exact_repeats(h, cols)
        out[rows[exact[len(h) - len(rows) :]]] = True
        return out


def _ranges(lo: npt.NDArray[np.intp], hi: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    """The concatenation of ``arange(lo[i], hi[i])``."""
    lens = hi - lo
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.intp)
    starts = np.repeat(lo - np.concatenate(([0], np.cumsum(lens)[:-1])), lens)
    return (starts + np.arange(total)).astype(np.intp, copy=False)


__all__ = ["PendingIdentities"]
