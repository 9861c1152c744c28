"""The JSON Schemas in schemas/json agree with the code that produces and validates records."""

from __future__ import annotations

import json
import math
from importlib import resources
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalstack.ingest.dlq import dlq_record
from signalstack.schemas.trade import InvalidTradeError, RejectReason, check_trade, validate_trade


def _schema(name: str) -> dict[str, Any]:
    return json.loads(resources.files("signalstack.schemas").joinpath(f"json/{name}").read_text())


def _types_ok(v: Any, types: str | list[str]) -> bool:
    types = [types] if isinstance(types, str) else types
    checks = {
        "string": lambda x: isinstance(x, str),
        "integer": lambda x: isinstance(x, int) and not isinstance(x, bool),
        "number": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
        "array": lambda x: isinstance(x, list),
        "object": lambda x: isinstance(x, dict),
        "null": lambda x: x is None,
    }
    return any(checks[t](v) for t in types)


def _mini_validate(schema: dict[str, Any], v: Any) -> bool:
    """The subset of draft 2020-12 our schemas use (jsonschema is not in the venv yet)."""
    if "const" in schema and not (v == schema["const"] and type(v) is type(schema["const"])):
        return False
    if "enum" in schema and v not in schema["enum"]:
        return False
    if "type" in schema and not _types_ok(v, schema["type"]):
        return False
    if isinstance(v, str) and not (
        schema.get("minLength", 0) <= len(v) <= schema.get("maxLength", math.inf)
    ):
        return False
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if "exclusiveMinimum" in schema and not v > schema["exclusiveMinimum"]:
            return False
        if isinstance(v, float) and not math.isfinite(v):
            return False
    if isinstance(v, list) and "items" in schema:
        return all(_mini_validate(schema["items"], x) for x in v)
    if isinstance(v, dict):
        props = schema.get("properties", {})
        if any(k not in v for k in schema.get("required", [])):
            return False
        if schema.get("additionalProperties") is False and set(v) - set(props):
            return False
        return all(_mini_validate(props[k], x) for k, x in v.items() if k in props)
    return True


def schema_accepts(schema: dict[str, Any], v: Any) -> bool:
    try:
        import jsonschema
    except ImportError:
        return _mini_validate(schema, v)
    return bool(jsonschema.Draft202012Validator(schema).is_valid(v))


GOOD = {
    "schema_version": 1, "symbol": "AAPL", "ts_event": 1763649312345000000, "price": 268.41,
    "size": 100.0, "exchange": 12, "conditions": [14, 41], "trade_id": "52983525029461",
    "sequence": 3815530, "tape": 3, "source": "polygon_ws", "ts_ingest": 1763649312346000000,
}  # fmt: skip

values = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**19), st.integers(-(2**64), 2**64),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 1e300]),
    st.floats(allow_nan=False, allow_infinity=False), st.integers(-5, 50).map(float),
    st.text(max_size=20), st.lists(st.integers(0, 60), max_size=3),
    st.lists(st.text(max_size=2), max_size=2),
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(key=st.sampled_from(sorted(GOOD)), value=values, drop=st.booleans())
def test_trade_schema_and_validate_trade_agree(key: str, value: Any, drop: bool) -> None:
    schema = _schema("trade_event.v1.json")
    rec = dict(GOOD)
    if drop:
        del rec[key]
    else:
        rec[key] = value
    try:
        validate_trade(rec)
        code_ok = True
    except InvalidTradeError:
        code_ok = False
    if key in ("conditions", "tape") and (drop or value is None):
        assert code_ok  # optional fields: absent or null is fine for both
        return
    assert schema_accepts(schema, rec) == code_ok, (key, value, drop)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("key", ["price", "size"])
def test_non_finite_numbers_are_rejected(key: str, bad: float) -> None:
    # JSON cannot carry them (so the schema need not say so), but a Python producer could.
    with pytest.raises(InvalidTradeError) as err:
        validate_trade({**GOOD, key: bad})
    assert err.value.reason is RejectReason.BAD_TYPE


def test_integral_floats_normalise_to_ints() -> None:
    ev = validate_trade(
        {**GOOD, "exchange": 12.0, "sequence": 5.0, "conditions": [37.0], "tape": 3.0}
    )
    assert (ev.exchange, ev.sequence, ev.conditions, ev.tape) == (12, 5, (37,), 3)
    assert all(type(v) is int for v in (ev.exchange, ev.sequence, ev.tape, *ev.conditions))


def test_good_record_passes_both_and_round_trips() -> None:
    schema = _schema("trade_event.v1.json")
    ev = validate_trade(GOOD)
    assert schema_accepts(schema, ev.to_dict())
    assert validate_trade(ev.to_dict()) == ev


def test_check_trade_reasons() -> None:
    cases = {
        RejectReason.NON_POSITIVE_PRICE: {"price": 0.0},
        RejectReason.NON_POSITIVE_SIZE: {"size": -1},
        RejectReason.MISSING_FIELD: {"trade_id": None},
        RejectReason.BAD_TYPE: {"exchange": "12"},
        RejectReason.SCHEMA_VERSION: {"schema_version": 2},
    }
    for reason, patch in cases.items():
        with pytest.raises(InvalidTradeError) as err:
            check_trade({**GOOD, **patch})
        assert err.value.reason is reason
    with pytest.raises(InvalidTradeError) as err:
        check_trade(GOOD, symbols={"MSFT"})
    assert err.value.reason is RejectReason.UNKNOWN_SYMBOL
    with pytest.raises(InvalidTradeError) as err:
        check_trade(GOOD, now_ns=GOOD["ts_event"] + 61 * 10**9, max_skew_ns=60 * 10**9)
    assert err.value.reason is RejectReason.CLOCK_SKEW
    check_trade(GOOD, now_ns=GOOD["ts_event"] + 59 * 10**9, max_skew_ns=60 * 10**9)


@pytest.mark.parametrize("raw", ['[{"ev":"T","p":', b"\xff\xfe not utf8", '{"ev":"T"}'])
@pytest.mark.parametrize("reason", [r.value for r in RejectReason] + ["internal_error"])
def test_dlq_records_match_their_schema(raw: str | bytes, reason: str) -> None:
    schema = _schema("dlq_record.v1.json")
    rec = dlq_record(raw, reason, "why " * 400, "polygon_ws", 1763649312345000000, "AAPL")
    assert schema_accepts(schema, rec)
    assert schema_accepts(schema, {**rec, "symbol": None})
    assert not schema_accepts(schema, {**rec, "reason": "whatever"})
    assert not schema_accepts(schema, {k: v for k, v in rec.items() if k != "raw"})
    if isinstance(raw, bytes):
        import base64

        assert base64.b64decode(rec["raw_b64"]) == raw
