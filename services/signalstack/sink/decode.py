"""Kafka message values → store frames; anything that does not decode becomes a DLQ record."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import pandas as pd

from signalstack.schemas.trade import InvalidTradeError, RejectReason, validate_trade
from signalstack.store.base import DlqRecord

Raw = tuple[bytes | None, bytes | None]  # (key, value)


def _text(b: bytes | None) -> str:
    return "" if b is None else b.decode("utf-8", errors="replace")


def _reject(
    topic: str, key: bytes | None, value: bytes | None, reason: str, detail: str
) -> DlqRecord:
    return DlqRecord(
        source=topic, reason=reason, payload=_text(value), detail=detail, key=_text(key) or None
    )


def decode_trades(topic: str, msgs: Iterable[Raw]) -> tuple[pd.DataFrame, list[DlqRecord]]:
    rows: list[dict[str, Any]] = []
    bad: list[DlqRecord] = []
    for key, value in msgs:
        try:
            obj = orjson.loads(value or b"")
        except orjson.JSONDecodeError as e:
            bad.append(_reject(topic, key, value, RejectReason.BAD_JSON.value, str(e)))
            continue
        try:
            rows.append(validate_trade(obj).to_dict())
        except InvalidTradeError as e:
            bad.append(_reject(topic, key, value, e.reason.value, e.detail))
    return pd.DataFrame.from_records(rows), bad


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
