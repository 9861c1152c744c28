"""(De)serialise the per-symbol state of :class:`FeatureStateMachine` for Spark's state store.

Arrow IPC of two small tables (pending trades, session history); exact for every dtype, no
pickle. The Spark job keeps one such blob per symbol in ``applyInPandasWithState`` state.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]

from signalstack.engines.core import FeatureStateMachine, Pending
from signalstack.features.bars import Minutes, TradeArrays
from signalstack.features.trades import identity_hash, trade_id_bytes


def _to_ipc(columns: dict[str, np.ndarray]) -> bytes:
    return _table_ipc(pa.table(columns))


def _table_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _from_ipc(blob: bytes) -> dict[str, np.ndarray]:
    table = pa.ipc.open_stream(pa.py_buffer(blob)).read_all()
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def encode_pending(p: Pending) -> bytes:
    cols = {f.name: getattr(p.trades, f.name) for f in fields(TradeArrays)}
    cols |= {"exchange": p.exchange, "ident": p.ident}
    table = pa.table(cols).append_column(
        "trade_id_bytes", pa.array(p.trade_id.astype(object), type=pa.binary())
    )
    return _table_ipc(table)


def decode_pending(blob: bytes) -> Pending:
    c = _from_ipc(blob)
    trades = TradeArrays(
        sym=c["sym"].astype(np.int32),
        ts=c["ts"].astype(np.int64),
        seq=c["seq"].astype(np.int64),
        price=c["price"].astype(np.float64),
        size=c["size"].astype(np.float64),
        flags=c["flags"].astype(np.uint8),
        session=c["session"].astype(np.int64),
    )
    exchange = c["exchange"].astype(np.int64)
    if "trade_id_bytes" in c:  # bytes as kept in memory (trailing zeros dropped: re-padded)
        raw = c["trade_id_bytes"]
        width = 8 * max(1, -(-max((len(b) for b in raw), default=0) // 8))
        return Pending(trades, exchange, raw.astype(f"S{width}"), c["ident"].astype(np.int64))
    # a blob of the earlier layout (trade_id strings, an older hash): recompute both
    tid, length = trade_id_bytes(c["trade_id"].astype(object))
    return Pending(trades, exchange, tid, identity_hash(trades.sym, exchange, tid, length))


def encode_minutes(m: Minutes) -> bytes:
    return _to_ipc({f.name: getattr(m, f.name) for f in fields(Minutes)})


def decode_minutes(blob: bytes) -> Minutes:
    c = _from_ipc(blob)
    ref = Minutes.empty()
    return Minutes(
        **{f.name: c[f.name].astype(getattr(ref, f.name).dtype) for f in fields(Minutes)}
    )


def save(machine: FeatureStateMachine) -> tuple[bytes, bytes]:
    return encode_pending(machine.pending), encode_minutes(machine.history)


def load(machine: FeatureStateMachine, pending: bytes | None, history: bytes | None) -> None:
    machine.pending = decode_pending(pending) if pending else Pending.empty()
    machine.history = decode_minutes(history) if history else Minutes.empty()
