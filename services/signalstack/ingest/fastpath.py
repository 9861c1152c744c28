"""The ingest hot path's wire types, compiled by msgspec.

A WebSocket frame of ``T`` events is decoded straight into :class:`WsTrade` structs: msgspec
checks the JSON, the field types and the range constraints in C, so the Python loop is left with
what needs state (symbol universe, wall clock, duplicates). The constraints are a *strict subset*
of :func:`signalstack.schemas.trade.check_trade`: a frame they refuse (or that mixes in other
events) is handed to the general path, which parses it event by event and gives every reject
its exact reason. The tests check the subset property on mutated events.

:class:`TradeRecord` is the trade event contract (``market.trades`` value, field order as in
:meth:`TradeEvent.to_dict`); one ``encode_lines`` call serialises a frame's records.

``gc=False``: these structs hold only scalars and lists of ints, never cycles, so the cyclic
garbage collector need not track the hundreds of thousands made per second.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from msgspec import Meta

from signalstack.schemas.trade import INT64_MAX, INT64_MIN, NS_PER_MS

I64 = Annotated[int, Meta(ge=INT64_MIN, le=INT64_MAX)]
# Finite and positive; the bound only keeps the fast path off absurd values (the general path
# still judges them).
_POSITIVE_FLOAT = Annotated[float, Meta(gt=0.0, lt=1e300)]
# Integral sizes only up to 2**53, where a double (what every consumer reads) is still exact.
_POSITIVE_INT = Annotated[int, Meta(gt=0, le=2**53)]
# A millisecond stamp whose nanosecond value still fits int64.
_MS = Annotated[int, Meta(gt=0, lt=INT64_MAX // NS_PER_MS)]
_NON_EMPTY = Annotated[str, Meta(min_length=1)]


class WsTrade(msgspec.Struct, tag_field="ev", tag="T", gc=False):
    """A Polygon WebSocket trade (``ev: "T"``); unknown fields are ignored, as Polygon adds some."""

    sym: _NON_EMPTY
    t: _MS
    p: _POSITIVE_FLOAT
    s: _POSITIVE_INT | _POSITIVE_FLOAT
    x: I64
    i: _NON_EMPTY
    q: I64
    z: I64 | None = None
    c: list[I64] | None = None


class TradeRecord(msgspec.Struct, gc=False):
    """The ``market.trades`` value (trade_event.v1), in :meth:`TradeEvent.to_dict` field order."""

    schema_version: int
    symbol: str
    ts_event: int
    price: float
    size: int | float
    exchange: int
    conditions: list[int]
    trade_id: str
    sequence: int
    tape: int | None
    source: str
    ts_ingest: int


FastPathRefused: Final = (msgspec.ValidationError, msgspec.DecodeError)
decode_trade_frame: Final = msgspec.json.Decoder(list[WsTrade]).decode
_encode_lines: Final = msgspec.json.Encoder().encode_lines


def encode_records(records: list[TradeRecord]) -> list[bytes]:
    """One JSON document per record (msgspec escapes newlines inside strings, so the split is
    exact)."""
    return _encode_lines(records).split(b"\n")[:-1]
