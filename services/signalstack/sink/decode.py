"""Kafka message values → store frames; anything that does not decode becomes a DLQ record."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from signalstack.schemas.trade import InvalidTradeError, RejectReason, check_trade
from signalstack.store.base import DlqRecord
from signalstack.store.batch import TradeBatch

Raw = tuple[bytes | None, bytes | None]  # (key, value)


def _text(b: bytes | None) -> str:
    return "" if b is None else b.decode("utf-8", errors="replace")


def _reject(
    topic: str, key: bytes | None, value: bytes | None, reason: str, detail: str
) -> DlqRecord:
    return DlqRecord(
        source=topic, reason=reason, payload=_text(value), detail=detail, key=_text(key) or None
    )


def decode_trades(topic: str, msgs: Iterable[Raw]) -> tuple[TradeBatch, list[DlqRecord]]:
    """Trade messages → columns. Each message is checked with ``check_trade`` (the rules of
    ``validate_trade``, without building a ``TradeEvent`` per message); the accepted objects
    are then turned into numpy columns one column at a time, with ``validate_trade``'s
    conversions (integral floats → int, ints → float, conditions → ints)."""
    objs: list[dict[str, Any]] = []
    bad: list[DlqRecord] = []
    loads = orjson.loads
    for key, value in msgs:
        try:
            obj = loads(value or b"")
        except orjson.JSONDecodeError as e:
            bad.append(_reject(topic, key, value, RejectReason.BAD_JSON.value, str(e)))
            continue
        try:
            check_trade(obj)
        except InvalidTradeError as e:
            bad.append(_reject(topic, key, value, e.reason.value, e.detail))
            continue
        objs.append(obj)
    tapes = [o.get("tape") for o in objs]
    tape_null = np.fromiter((t is None for t in tapes), dtype=bool, count=len(objs))
    batch = TradeBatch(
        symbol=_objects([o["symbol"] for o in objs]),
        ts_event=np.array([o["ts_event"] for o in objs], dtype=np.int64),
        price=np.array([o["price"] for o in objs], dtype=np.float64),
        size=np.array([o["size"] for o in objs], dtype=np.float64),
        exchange=np.array([o["exchange"] for o in objs], dtype=np.int64),
        trade_id=_objects([o["trade_id"] for o in objs]),
        sequence=np.array([o["sequence"] for o in objs], dtype=np.int64),
        conditions=[_ints(o.get("conditions")) for o in objs],
        tape=np.array([0 if t is None else t for t in tapes], dtype=np.int64),
        tape_null=tape_null,
        source=_objects([o["source"] for o in objs]),
        ts_ingest=np.array([o["ts_ingest"] for o in objs], dtype=np.int64),
    )
    return batch, bad


def _objects(values: list[Any]) -> npt.NDArray[np.object_]:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _ints(conds: Any) -> list[int]:
    if not conds:
        return []
    return [c if type(c) is int else int(c) for c in conds]


def _ts(v: Any) -> pd.Timestamp:
    if isinstance(v, int) and not isinstance(v, bool):
        return pd.Timestamp(v, unit="ns", tz="UTC")
    ts = pd.Timestamp(v)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def decode_rows(
    topic: str, msgs: Iterable[Raw], required: tuple[str, ...]
) -> tuple[pd.DataFrame, list[DlqRecord]]:
    """Generic JSON rows (features, predictions): objects with ``required`` keys and ``ts``
    as ns since the epoch or an ISO-8601 string."""
    rows: list[dict[str, Any]] = []
    bad: list[DlqRecord] = []
    for key, value in msgs:
        try:
            obj = orjson.loads(value or b"")
        except orjson.JSONDecodeError as e:
            bad.append(_reject(topic, key, value, RejectReason.BAD_JSON.value, str(e)))
            continue
        if not isinstance(obj, dict):
            bad.append(
                _reject(topic, key, value, RejectReason.NOT_AN_OBJECT.value, "not an object")
            )
            continue
        missing = [k for k in required if k not in obj]
        if missing:
            bad.append(
                _reject(topic, key, value, RejectReason.MISSING_FIELD.value, ", ".join(missing))
            )
            continue
        try:
            obj["ts"] = _ts(obj["ts"])
        except (ValueError, TypeError) as e:
            bad.append(_reject(topic, key, value, RejectReason.BAD_TYPE.value, f"ts: {e}"))
            continue
        obj.pop("schema_version", None)
        rows.append(obj)
    return pd.DataFrame.from_records(rows), bad
