"""Kafka message values → store frames; anything that does not decode becomes a DLQ record."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Final, Literal

import msgspec
import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
from msgspec import Meta

from signalstack.schemas.constraints import I64, NON_EMPTY, POSITIVE_FLOAT, POSITIVE_INT
from signalstack.schemas.trade import InvalidTradeError, RejectReason, Source, check_trade
from signalstack.store.base import DlqRecord
from signalstack.store.batch import TradeBatch

Raw = tuple[bytes | None, bytes | None]  # (key, value)


def _text(b: bytes | None) -> str:
    return "" if b is None else b.decode("utf-8", errors="replace")


def _reject(
    topic: str,
    key: bytes | None,
    value: bytes | None,
    reason: str,
    detail: str,
    origin: str | None = None,
) -> DlqRecord:
    return DlqRecord(
        source=topic,
        reason=reason,
        payload=_text(value),
        detail=detail,
        key=_text(key) or None,
        origin=origin,
    )


def _origin(origins: Sequence[str] | None, i: int) -> str | None:
    return None if origins is None else origins[i]


# A trade event as the fast path accepts it: msgspec checks JSON, types and ranges in C. Every
# constraint is a strict subset of ``check_trade`` (the tests check it on mutated events), so
# whatever passes here passes there with the same values; anything else is judged message by
# message by the general path, which gives each reject its exact reason.
_SYMBOL = Annotated[str, Meta(min_length=1, max_length=16)]


class TradeValue(msgspec.Struct, gc=False):
    schema_version: Literal[1]  # SCHEMA_VERSION
    symbol: _SYMBOL
    ts_event: I64
    price: POSITIVE_FLOAT
    size: POSITIVE_INT | POSITIVE_FLOAT
    exchange: I64
    trade_id: NON_EMPTY
    sequence: I64
    source: Source
    ts_ingest: I64
    conditions: list[I64] | None = None
    tape: I64 | None = None


_decode_value: Final = msgspec.json.Decoder(TradeValue).decode
_REFUSED: Final = (msgspec.ValidationError, msgspec.DecodeError, TypeError)  # TypeError: None


def decode_trades(
    topic: str, msgs: Iterable[Raw], origins: Sequence[str] | None = None
) -> tuple[TradeBatch, list[DlqRecord]]:
    """Trade messages → columns, with ``validate_trade``'s rules and conversions (integral
    floats → int, ints → float, conditions → ints). A batch whose every message passes
    :class:`TradeValue` is decoded in C; otherwise each message goes through ``check_trade``.
    ``origins`` (one per message, e.g. its Kafka coordinates) become the rejects' origin, so
    a replayed message is not sent to the DLQ twice."""
    msgs = msgs if isinstance(msgs, list) else list(msgs)
    try:
        recs = [_decode_value(value) for _, value in msgs]  # type: ignore[arg-type]
    except _REFUSED:
        return _decode_general(topic, msgs, origins)
    return _from_values(recs), []


def _from_values(recs: list[TradeValue]) -> TradeBatch:
    tapes = [r.tape for r in recs]
    return TradeBatch(
        symbol=_objects([r.symbol for r in recs]),
        ts_event=np.array([r.ts_event for r in recs], dtype=np.int64),
        price=np.array([r.price for r in recs], dtype=np.float64),
        size=np.array([r.size for r in recs], dtype=np.float64),
        exchange=np.array([r.exchange for r in recs], dtype=np.int64),
        trade_id=_objects([r.trade_id for r in recs]),
        sequence=np.array([r.sequence for r in recs], dtype=np.int64),
        conditions=[r.conditions or [] for r in recs],
        tape=np.array([0 if t is None else t for t in tapes], dtype=np.int64),
        tape_null=np.array([t is None for t in tapes], dtype=bool),
        source=_objects([r.source.value for r in recs]),
        ts_ingest=np.array([r.ts_ingest for r in recs], dtype=np.int64),
    )


def _decode_general(
    topic: str, msgs: Iterable[Raw], origins: Sequence[str] | None
) -> tuple[TradeBatch, list[DlqRecord]]:
    """Message by message: ``check_trade`` on the parsed object, rejects with its reason."""
    objs: list[dict[str, Any]] = []
    bad: list[DlqRecord] = []
    loads = orjson.loads
    for i, (key, value) in enumerate(msgs):
        try:
            obj = loads(value or b"")
        except orjson.JSONDecodeError as e:
            bad.append(
                _reject(topic, key, value, RejectReason.BAD_JSON.value, str(e), _origin(origins, i))
            )
            continue
        try:
            check_trade(obj)
        except InvalidTradeError as e:
            bad.append(_reject(topic, key, value, e.reason.value, e.detail, _origin(origins, i)))
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
    topic: str,
    msgs: Iterable[Raw],
    required: tuple[str, ...],
    origins: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, list[DlqRecord]]:
    """Generic JSON rows (features, predictions): objects with ``required`` keys and ``ts``
    as ns since the epoch or an ISO-8601 string. ``origins`` as for :func:`decode_trades`."""
    rows: list[dict[str, Any]] = []
    bad: list[DlqRecord] = []
    for i, (key, value) in enumerate(msgs):
        origin = _origin(origins, i)
        try:
            obj = orjson.loads(value or b"")
        except orjson.JSONDecodeError as e:
            bad.append(_reject(topic, key, value, RejectReason.BAD_JSON.value, str(e), origin))
            continue
        if not isinstance(obj, dict):
            bad.append(
                _reject(
                    topic, key, value, RejectReason.NOT_AN_OBJECT.value, "not an object", origin
                )
            )
            continue
        missing = [k for k in required if k not in obj]
        if missing:
            bad.append(
                _reject(
                    topic, key, value, RejectReason.MISSING_FIELD.value, ", ".join(missing), origin
                )
            )
            continue
        try:
            obj["ts"] = _ts(obj["ts"])
        except (ValueError, TypeError) as e:
            bad.append(_reject(topic, key, value, RejectReason.BAD_TYPE.value, f"ts: {e}", origin))
            continue
        obj.pop("schema_version", None)
        rows.append(obj)
    return pd.DataFrame.from_records(rows), bad
