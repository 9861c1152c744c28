"""Polygon wire formats ↔ SignalStack trade events: the one place units are converted.

WebSocket trades carry SIP time in **milliseconds** (``t``); REST ``/v3/trades`` carries
nanoseconds (``sip_timestamp``). Both become ``ts_event`` in nanoseconds here and nowhere else.
The converters never raise: a missing or mistyped field is passed through as ``None`` or as is,
so :func:`signalstack.schemas.trade.check_trade` reports it with the right reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from signalstack.schemas.trade import NS_PER_MS, SCHEMA_VERSION

WS_SOURCE: Final = "polygon_ws"
REST_SOURCE: Final = "polygon_rest"


def ws_trade_to_event(ev: Mapping[str, Any], ts_ingest: int) -> dict[str, Any]:
    """A WebSocket ``T`` event (``sym, x, i, z, p, s, c, t, q``) → trade event dict."""
    t = ev.get("t")
    return {
        "schema_version": SCHEMA_VERSION,
        "symbol": ev.get("sym"),
        "ts_event": t * NS_PER_MS if type(t) is int else t,
        "price": ev.get("p"),
        "size": ev.get("s"),
        "exchange": ev.get("x"),
        "conditions": ev.get("c") or [],
        "trade_id": ev.get("i"),
        "sequence": ev.get("q"),
        "tape": ev.get("z"),
        "source": WS_SOURCE,
        "ts_ingest": ts_ingest,
    }


def rest_trade_to_event(symbol: str, r: Mapping[str, Any], ts_ingest: int) -> dict[str, Any]:
    """A ``/v3/trades/{T}`` result → trade event dict (timestamps already in ns)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "symbol": symbol,
        "ts_event": r.get("sip_timestamp"),
        "price": r.get("price"),
        "size": r.get("size"),
        "exchange": r.get("exchange"),
        "conditions": r.get("conditions") or [],
        "trade_id": r.get("id"),
        "sequence": r.get("sequence_number"),
        "tape": r.get("tape"),
        "source": REST_SOURCE,
        "ts_ingest": ts_ingest,
    }


def status_frame(status: str, message: str) -> list[dict[str, str]]:
    return [{"ev": "status", "status": status, "message": message}]
