"""Trades as columns (numpy arrays), the sink's hot-path shape: no DataFrame per batch.

A :class:`TradeBatch` holds the columns of validated trade events (``validate_trade``
semantics, see :mod:`signalstack.sink.decode`); :func:`check_batch` splits off rows that would
violate a ``trades`` constraint, with the same reasons as
:func:`signalstack.store.frames.prepare_trades`. Stores write it with
``Store.write_trade_batch`` (TimescaleDB encodes it straight to binary COPY).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from signalstack.store.base import DlqRecord, text_has_nul

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
OBJ = npt.NDArray[np.object_]
TRADE_DLQ_SOURCE = "store.trades"
INT2_MIN, INT2_MAX = -32768, 32767


@dataclass(slots=True)
class TradeBatch:
    symbol: OBJ
    ts_event: I64
    price: F64
    size: F64
    exchange: I64
    trade_id: OBJ
    sequence: I64
    conditions: list[list[int]]
    tape: I64  # 0 where tape_null
    tape_null: npt.NDArray[np.bool_]
    source: OBJ
    ts_ingest: I64
    # The rows' binary COPY tuples, when encoded ahead of the write (TimescaleStore.
    # prepare_trade_batch); a subset made by take() starts without them.
    copy_body: bytes | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ts_event)

    def take(self, idx: slice | npt.NDArray[Any]) -> TradeBatch:
        if isinstance(idx, slice):
            conds = self.conditions[idx]
        else:
            pos = np.flatnonzero(idx) if idx.dtype == bool else idx
            every = self.conditions
            conds = [every[i] for i in pos.tolist()]
        return TradeBatch(
            symbol=self.symbol[idx],
            ts_event=self.ts_event[idx],
            price=self.price[idx],
            size=self.size[idx],
            exchange=self.exchange[idx],
            trade_id=self.trade_id[idx],
            sequence=self.sequence[idx],
            conditions=conds,
            tape=self.tape[idx],
            tape_null=self.tape_null[idx],
            source=self.source[idx],
            ts_ingest=self.ts_ingest[idx],
        )

    def split_by_symbol(self, parts: int) -> list[TradeBatch]:
        """Up to ``parts`` batches, each holding all the rows of its symbols, balanced by row
        count (largest symbol first to the lightest part). Parallel COPYs of them insert into
        disjoint ranges of the ``(symbol, ts, …)`` unique index, so they rarely meet on a page."""
        codes, symbols = pd.factorize(self.symbol)  # hashing: np.unique sorts Python strings
        counts = np.bincount(codes, minlength=len(symbols))
        parts = max(1, min(parts, len(symbols)))
        if parts == 1:
            return [self]
        load = [0] * parts
        owner = np.empty(len(symbols), dtype=np.int64)
        for s in np.argsort(-counts, kind="stable"):
            k = load.index(min(load))
            owner[s] = k
            load[k] += int(counts[s])
        part = owner[codes]
        return [self.take(part == k) for k in range(parts)]

    def row(self, i: int) -> dict[str, Any]:
        """Row ``i`` as a trade-event dict (``TradeEvent.to_dict()`` without schema_version)."""
        return {
            "symbol": str(self.symbol[i]),
            "ts_event": int(self.ts_event[i]),
            "price": float(self.price[i]),
            "size": float(self.size[i]),
            "exchange": int(self.exchange[i]),
            "conditions": list(self.conditions[i]),
            "trade_id": str(self.trade_id[i]),
            "sequence": int(self.sequence[i]),
            "tape": None if self.tape_null[i] else int(self.tape[i]),
            "source": str(self.source[i]),
            "ts_ingest": int(self.ts_ingest[i]),
        }

    def row_json(self, i: int) -> str:
        return orjson.dumps(self.row(i)).decode()

    def to_frame(self) -> pd.DataFrame:
        """The store frame convention for trades (``store/base.py``)."""
        return pd.DataFrame(
            {
                "symbol": self.symbol,
                "ts_event": self.ts_event,
                "price": self.price,
                "size": self.size,
                "exchange": self.exchange,
                "trade_id": self.trade_id,
                "sequence": self.sequence,
                "conditions": pd.Series(self.conditions, dtype=object),
                "tape": pd.Series(self.tape, dtype="Int64").mask(self.tape_null),
                "source": self.source,
                "ts_ingest": self.ts_ingest,
            }
        )

    @staticmethod
    def from_typed(typed: pd.DataFrame) -> TradeBatch:
        """From a frame typed by :func:`signalstack.store.frames.prepare_trades`."""
        tape = typed["tape"]
        null = tape.isna().to_numpy()
        return TradeBatch(
            symbol=typed["symbol"].to_numpy(dtype=object),
            ts_event=typed["ts_event"].to_numpy(dtype=np.int64),
            price=typed["price"].to_numpy(dtype=np.float64),
            size=typed["size"].to_numpy(dtype=np.float64),
            exchange=typed["exchange"].to_numpy(dtype=np.int64),
            trade_id=typed["trade_id"].to_numpy(dtype=object),
            sequence=typed["sequence"].to_numpy(dtype=np.int64),
            conditions=list(typed["conditions"]),
            tape=tape.fillna(0).to_numpy(dtype=np.int64),
            tape_null=null,
            source=typed["source"].to_numpy(dtype=object),
            ts_ingest=typed["ts_ingest"].to_numpy(dtype=np.int64),
        )


def first_failures(
    checks: Sequence[tuple[npt.NDArray[np.bool_], str]], n: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.object_]]:
    """Rows passing every check, and per row the reason of the first check it fails ("" when
    none): the rule both constraint splits (``check_batch``, ``frames.prepare_trades``) use."""
    reasons = np.full(n, "", dtype=object)
    ok = np.ones(n, dtype=bool)
    for mask, reason in checks:
        hit = ok & mask
        if hit.any():
            reasons[hit] = reason
            ok &= ~hit
    return ok, reasons


def check_batch(batch: TradeBatch) -> tuple[TradeBatch, list[DlqRecord]]:
    """Split off rows violating a ``trades`` constraint (reasons as in ``prepare_trades``;
    NULL keys cannot occur: the columns are typed)."""
    ok, reasons = first_failures(
        [
            (~(batch.price > 0), "trades_price_positive"),
            (~(batch.size > 0), "trades_size_positive"),
            ((batch.exchange < INT2_MIN) | (batch.exchange > INT2_MAX), "exchange_out_of_range"),
            (
                ~batch.tape_null & ((batch.tape < INT2_MIN) | (batch.tape > INT2_MAX)),
                "tape_out_of_range",
            ),
            (
                text_has_nul(batch.symbol)
                | text_has_nul(batch.trade_id)
                | text_has_nul(batch.source),
                "text_has_nul",
            ),
        ],
        len(batch),
    )
    if ok.all():
        return batch, []
    rejects = [
        DlqRecord(
            source=TRADE_DLQ_SOURCE,
            reason=str(reasons[i]),
            payload=batch.row_json(int(i)),
            detail="row violates a trades constraint",
            key=str(batch.symbol[i]),
        )
        for i in np.flatnonzero(~ok)
    ]
    return batch.take(ok), rejects
