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

from signalstack.schemas.constraints import I64, NON_EMPTY, POSITIVE_FLOAT, POSITIVE_INT
from signalstack.schemas.trade import INT64_MAX, NS_PER_MS

# A millisecond stamp whose nanosecond value still fits int64.
_MS = Annotated[int, Meta(gt=0, lt=INT64_MAX // NS_PER_MS)]


class WsTrade(msgspec.Struct, tag_field="ev", tag="T", gc=False):
    """A Polygon WebSocket trade (``ev: "T"``); unknown fields are ignored, as Polygon adds some."""

    sym: NON_EMPTY
    t: _MS
    p: POSITIVE_FLOAT
    s: POSITIVE_INT | POSITIVE_FLOAT
    x: I64
    i: NON_EMPTY
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
