"""The fast path's compiled checks are a strict subset of ``validate_trade``: whatever msgspec
accepts, the validator accepts too, and the record it encodes is the validator's event."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalstack.ingest.fastpath import (
    FastPathRefused,
    TradeRecord,
    decode_trade_frame,
    encode_records,
)
from signalstack.marketdata.wire import WS_SOURCE, ws_trade_to_event
from signalstack.schemas.trade import NS_PER_MS, SCHEMA_VERSION, InvalidTradeError, validate_trade

VALID = {"ev": "T", "sym": "AAPL", "x": 12, "i": "52983525029461", "z": 3, "p": 187.43,
         "s": 100, "c": [14, 41], "t": 1_700_000_000_123, "q": 1_234_567}  # fmt: skip
ODD = st.sampled_from([
    None, 0, -1, 1, 12, 12.0, 2.5, 0.0, -0.0, -3.5, 1e308, 1e300, 2**63 - 1, 2**63, -(2**63),
    -(2**63) - 1, 2**64, "12", "", "x", True, False, [], [37], [37.0], [2**63], ["a"], {},
    9_223_372_036_854, 9_223_372_036_853,
])  # fmt: skip


def _record(ev: dict, now: int) -> TradeRecord:
    # stdlib json: it writes integers beyond int64 too, as a feed could
    (w,) = decode_trade_frame(json.dumps([ev]).encode())
    return TradeRecord(SCHEMA_VERSION, w.sym, w.t * NS_PER_MS, w.p, w.s, w.x,
                       [] if w.c is None else w.c, w.i, w.q, w.z, WS_SOURCE, now)  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(
    field=st.sampled_from(["sym", "x", "i", "z", "p", "s", "c", "t", "q", "ev"]),
    value=ODD,
    drop=st.booleans(),
)
def test_what_the_fast_path_accepts_the_validator_accepts_identically(field, value, drop) -> None:
    ev = dict(VALID)
    if drop:
        ev.pop(field)
    else:
        ev[field] = value
    now = 1_700_000_000_500_000_000
    try:
        rec = _record(ev, now)
    except FastPathRefused:
        return  # the general path judges it
    try:
        want = validate_trade(ws_trade_to_event(ev, now))
    except InvalidTradeError as err:  # pragma: no cover - a failure is the finding
        pytest.fail(f"fast path accepted {ev!r}; validate_trade says {err}")
    got = orjson.loads(encode_records([rec])[0])
    exp = want.to_dict()
    assert list(got) == list(exp)  # the contract's field order
    for k in exp:
        assert got[k] == exp[k], (k, ev, got)
        if k not in ("price", "size"):  # numbers: 100 and 100.0 are the same JSON number
            assert type(got[k]) is type(exp[k]), (k, ev, got)


@pytest.mark.parametrize(
    "frame",
    [
        b"not json",
        b'{"ev":"T"}',
        b'[{"ev":"status","status":"connected","message":"Connected Successfully"}]',
        orjson.dumps([VALID, {"ev": "Q", "sym": "AAPL"}]),
        orjson.dumps([VALID, {**VALID, "p": 0}]),
    ],
)
def test_frames_with_anything_but_valid_trades_are_refused_whole(frame: bytes) -> None:
    with pytest.raises(FastPathRefused):
        decode_trade_frame(frame)


def test_encode_records_splits_one_document_per_record_even_with_newlines_in_ids() -> None:
    recs = [_record({**VALID, "i": f"a\nb{k}"}, 1) for k in range(3)]
    docs = encode_records(recs)
    assert len(docs) == 3
    assert [orjson.loads(d)["trade_id"] for d in docs] == ["a\nb0", "a\nb1", "a\nb2"]
    assert encode_records([]) == []


def test_polygon_fields_we_do_not_use_are_ignored() -> None:
    (w,) = decode_trade_frame(orjson.dumps([{**VALID, "trfi": 202, "trft": 1, "ds": "x"}]))
    assert (w.sym, w.x, w.i) == ("AAPL", 12, "52983525029461")
