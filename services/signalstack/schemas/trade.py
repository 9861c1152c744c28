"""The trade event: the value of Kafka ``market.trades`` (DESIGN.md, "Kafka contracts").

One validation function, :func:`validate_trade`, is used by every producer (ingest, backfill,
simulator). Timestamps are UTC nanoseconds since the epoch; Polygon's WebSocket milliseconds are
converted exactly once, at the edge (:func:`ms_to_ns`). The JSON Schema in
``schemas/json/trade_event.v1.json`` describes the same contract for other languages and is
checked against this code by the tests.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

SCHEMA_VERSION: Final = 1
NS_PER_MS: Final = 1_000_000
NS_PER_S: Final = 1_000_000_000


class Source(StrEnum):
    POLYGON_WS = "polygon_ws"
    POLYGON_REST = "polygon_rest"
    YFINANCE = "yfinance"
    SIM = "sim"


class RejectReason(StrEnum):
    """Why an input was rejected; the label on the DLQ record and on the rejection metric."""

    BAD_JSON = "bad_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    BAD_TYPE = "bad_type"
    NON_POSITIVE_PRICE = "non_positive_price"
    NON_POSITIVE_SIZE = "non_positive_size"
    UNKNOWN_SYMBOL = "unknown_symbol"
    CLOCK_SKEW = "clock_skew"
    LATE = "late"
    SCHEMA_VERSION = "schema_version"


class InvalidTradeError(ValueError):
    """A trade that fails validation; ``reason`` is a :class:`RejectReason`."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class TradeEvent:
    symbol: str
    ts_event: int  # ns since epoch, UTC (SIP timestamp)
    price: float
    size: float
    exchange: int
    trade_id: str
    sequence: int
    source: Source
    ts_ingest: int  # ns since epoch, UTC, when SignalStack first saw it
    conditions: tuple[int, ...] = ()
    tape: int | None = None
    schema_version: int = field(default=SCHEMA_VERSION)

    @property
    def identity(self) -> tuple[str, int, str]:
        """Trade identity used for deduplication: Polygon's id is unique per ticker+exchange."""
        return (self.symbol, self.exchange, self.trade_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "symbol": self.symbol,
            "ts_event": self.ts_event,
            "price": self.price,
            "size": self.size,
            "exchange": self.exchange,
            "conditions": list(self.conditions),
            "trade_id": self.trade_id,
            "sequence": self.sequence,
            "tape": self.tape,
            "source": self.source.value,
            "ts_ingest": self.ts_ingest,
        }


REQUIRED_FIELDS: Final = (
    "schema_version",
    "symbol",
    "ts_event",
    "price",
    "size",
    "exchange",
    "trade_id",
    "sequence",
    "source",
    "ts_ingest",
)

_SOURCES: Final = {s.value: s for s in Source}


def ms_to_ns(ms: int) -> int:
    """Polygon WebSocket milliseconds → nanoseconds (exact integer arithmetic)."""
    return int(ms) * NS_PER_MS


def _bad_int(key: str, v: Any) -> InvalidTradeError:
    return InvalidTradeError(RejectReason.BAD_TYPE, f"{key} must be an integer, got {v!r}")


def _num(key: str, v: Any) -> float:
    t = type(v)
    if t is float:
        if v - v != 0.0:  # inf or nan, without a function call on the hot path
            raise InvalidTradeError(RejectReason.BAD_TYPE, f"{key} must be finite, got {v!r}")
        return v  # type: ignore[no-any-return]
    if t is int:
        return float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InvalidTradeError(RejectReason.BAD_TYPE, f"{key} must be a number, got {v!r}")
    f = float(v)
    if not math.isfinite(f):
        raise InvalidTradeError(RejectReason.BAD_TYPE, f"{key} must be finite, got {v!r}")
    return f


INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1


def _is_int(v: Any) -> bool:
    """An integer as JSON Schema means it (any number with a zero fractional part, not a bool),
    within int64: every consumer (Kafka JSON readers, TimescaleDB bigint) stores it there."""
    if type(v) is int or (isinstance(v, int) and not isinstance(v, bool)):
        return INT64_MIN <= v <= INT64_MAX
    return isinstance(v, float) and v.is_integer() and INT64_MIN <= v <= INT64_MAX


def check_trade(
    obj: Any,
    *,
    symbols: Collection[str] | None = None,
    now_ns: int | None = None,
    max_skew_ns: int | None = None,
) -> None:
    """The validation rules of :func:`validate_trade` without building a :class:`TradeEvent`.

    This is the same check (``validate_trade`` calls it); producers on a hot path (ingest) call
    it directly on the dict they are about to serialise. Raises :class:`InvalidTradeError`.
    """
    if not isinstance(obj, Mapping):
        raise InvalidTradeError(
            RejectReason.NOT_AN_OBJECT, f"expected an object, got {type(obj).__name__}"
        )
    get = obj.get
    for k in REQUIRED_FIELDS:
        if get(k) is None:
            missing = [k for k in REQUIRED_FIELDS if get(k) is None]
            raise InvalidTradeError(RejectReason.MISSING_FIELD, "missing " + ", ".join(missing))
    version = obj["schema_version"]
    if type(version) is bool or version != SCHEMA_VERSION:
        raise InvalidTradeError(
            RejectReason.SCHEMA_VERSION, f"unsupported schema_version {version!r}"
        )
    symbol = obj["symbol"]
    if type(symbol) is not str or not symbol or len(symbol) > 16:
        raise InvalidTradeError(
            RejectReason.BAD_TYPE, f"symbol must be a short string, got {symbol!r}"
        )
    trade_id = obj["trade_id"]
    if type(trade_id) is not str or not trade_id:
        raise InvalidTradeError(
            RejectReason.BAD_TYPE, f"trade_id must be a non-empty string, got {trade_id!r}"
        )
    src = obj["source"]
    if type(src) is not str or src not in _SOURCES:
        raise InvalidTradeError(RejectReason.BAD_TYPE, f"unknown source {src!r}")
    ts_event = obj["ts_event"]
    for key in ("ts_event", "ts_ingest", "exchange", "sequence"):
        v = obj[key]
        if not _is_int(v):
            raise _bad_int(key, v)
    price = _num("price", obj["price"])
    size = _num("size", obj["size"])
    tape = get("tape")
    if tape is not None and not _is_int(tape):
        raise InvalidTradeError(RejectReason.BAD_TYPE, f"tape must be an integer, got {tape!r}")
    conds = get("conditions")
    if conds:
        if not isinstance(conds, (list, tuple)) or not all(_is_int(c) for c in conds):
            raise InvalidTradeError(
                RejectReason.BAD_TYPE, f"conditions must be integers, got {conds!r}"
            )
    elif conds is not None and not isinstance(conds, (list, tuple)):
        raise InvalidTradeError(
            RejectReason.BAD_TYPE, f"conditions must be integers, got {conds!r}"
        )
    if price <= 0:
        raise InvalidTradeError(RejectReason.NON_POSITIVE_PRICE, f"price {price!r} <= 0")
    if size <= 0:
        raise InvalidTradeError(RejectReason.NON_POSITIVE_SIZE, f"size {size!r} <= 0")
    if symbols is not None and symbol not in symbols:
        raise InvalidTradeError(RejectReason.UNKNOWN_SYMBOL, f"symbol {symbol!r} is not subscribed")
    if now_ns is not None and max_skew_ns is not None and abs(ts_event - now_ns) > max_skew_ns:
        raise InvalidTradeError(
            RejectReason.CLOCK_SKEW,
            f"ts_event is {(ts_event - now_ns) / NS_PER_S:+.1f}s from the wall clock",
        )


def validate_trade(
    obj: Any,
    *,
    symbols: Collection[str] | None = None,
    now_ns: int | None = None,
    max_skew_ns: int | None = None,
) -> TradeEvent:
    """Check a decoded trade event and return it typed; raise :class:`InvalidTradeError`.

    ``symbols``: the allowed universe (None allows any). ``now_ns``/``max_skew_ns``: for live
    sources, reject trades stamped further than ``max_skew_ns`` from the wall clock.
    """
    check_trade(obj, symbols=symbols, now_ns=now_ns, max_skew_ns=max_skew_ns)
    conds = obj.get("conditions") or ()
    return TradeEvent(
        symbol=obj["symbol"],
        ts_event=int(obj["ts_event"]),
        price=float(obj["price"]),
        size=float(obj["size"]),
        exchange=int(obj["exchange"]),
        trade_id=obj["trade_id"],
        sequence=int(obj["sequence"]),
        source=_SOURCES[obj["source"]],
        ts_ingest=int(obj["ts_ingest"]),
        conditions=tuple(int(c) for c in conds),
        tape=None if obj.get("tape") is None else int(obj["tape"]),
    )
