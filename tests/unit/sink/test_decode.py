"""Columnar trade decoding keeps validate_trade's semantics: same accepted rows, same values,
same reject reasons."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalstack.schemas.trade import InvalidTradeError, validate_trade
from signalstack.sink import decode
from signalstack.sink.decode import (
    _REFUSED,
    _decode_value,
    _from_values,
    decode_rows,
    decode_trades,
)
from signalstack.sink.service import _Origins
from signalstack.store.synthetic import synthetic_trades


def _messages(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for rec in synthetic_trades(n, seed=5).to_dict("records"):
        row = {str(k): v for k, v in rec.items()}
        row["schema_version"] = 1
        row["tape"] = None if pd.isna(row["tape"]) else int(row["tape"])
        out.append(row)
    return out


def test_rows_equal_validate_trade_and_rejects_carry_its_reason() -> None:
    objs: list[dict[str, Any]] = _messages(200)
    odd = dict(objs[0])
    odd.update(trade_id="odd", ts_event=float(odd["ts_event"] // 1000 * 1000), price=7, size=3)
    odd.update(conditions=[12.0, 37], tape=2.0)
    objs.append(odd)
    bad: list[Any] = [
        {**objs[1], "price": 0},
        {**objs[2], "size": -1.0},
        {**objs[3], "exchange": 1.5},
        {**objs[4], "source": "nope"},
        {**objs[5], "schema_version": 2},
        {"symbol": "AAPL"},
        [1, 2],
    ]
    raws = [(b"k", orjson.dumps(o)) for o in objs + bad] + [(b"k", b"{nope"), (None, None)]
    batch, rejects = decode_trades("t", raws)

    expected = [validate_trade(o).to_dict() for o in objs]
    assert len(batch) == len(expected)
    for i, exp in enumerate(expected):
        exp.pop("schema_version")
        got = batch.row(i)
        assert got == exp
        assert type(got["price"]) is float and type(got["ts_event"]) is int
    reasons = []
    for o in bad:
        with pytest.raises(InvalidTradeError) as e:
            validate_trade(o)
        reasons.append(e.value.reason.value)
    assert [r.reason for r in rejects] == [*reasons, "bad_json", "bad_json"]
    assert rejects[0].payload == orjson.dumps(bad[0]).decode() and rejects[0].key == "k"
    assert all(r.origin is None for r in rejects)

    # With origins (the sink passes each message's Kafka coordinates), each reject keeps its
    # message's: equal bytes at two offsets are two rejects, the same offset replayed is one.
    origins = [f"kafka:t:0:{i}" for i in range(len(raws))]
    _, placed = decode_trades("t", raws, origins)
    assert [r.origin for r in placed] == origins[len(objs) :]
    _, twice = decode_rows("f", [(None, b"{"), (None, b"{")], ("symbol", "ts"), ["a", "b"])
    assert [r.origin for r in twice] == ["a", "b"]
    assert twice[0].dedup_key != twice[1].dedup_key
    _, again = decode_rows("f", [(None, b"{")], ("symbol", "ts"), ["a"])
    assert again[0].dedup_key == twice[0].dedup_key


def test_frame_round_trip_and_empty_batch() -> None:
    batch, rejects = decode_trades("t", [(None, orjson.dumps(m)) for m in _messages(50)])
    assert not rejects
    frame = batch.to_frame()
    assert frame["tape"].dtype == "Int64"
    assert frame["tape"].isna().to_numpy().tolist() == batch.tape_null.tolist()
    empty, none = decode_trades("t", [])
    assert len(empty) == 0 and none == [] and empty.ts_event.dtype == np.int64


# ---- the msgspec fast path ---------------------------------------------------------------------

VALUE = {"schema_version": 1, "symbol": "AAPL", "ts_event": 1_700_000_000_123_000_000,
         "price": 187.43, "size": 100, "exchange": 12, "conditions": [14, 41],
         "trade_id": "52983525029461", "sequence": 1_234_567, "tape": 3, "source": "polygon_ws",
         "ts_ingest": 1_700_000_000_124_000_000}  # fmt: skip
ODD = st.sampled_from([
    None, 0, -1, 1, 12, 12.0, 2.5, 0.0, -0.0, -3.5, 1e308, 1e300, 2**63 - 1, 2**63, -(2**63),
    -(2**63) - 1, 2**64, "12", "", "x", "sim", "nope", "A" * 16, "A" * 17, True, False, [], [37],
    [37.0], [2**63], ["a"], {}, 2, 1.0,
])  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(field=st.sampled_from([*VALUE, "extra"]), value=ODD, drop=st.booleans())
def test_what_the_fast_path_accepts_check_trade_accepts_identically(field, value, drop) -> None:
    obj = dict(VALUE)
    if drop:
        obj.pop(field, None)
    else:
        obj[field] = value
    raw = json.dumps(obj).encode()  # stdlib json: writes integers beyond int64 too
    try:
        rec = _decode_value(raw)
    except _REFUSED:
        return  # the general path judges it
    try:
        want = validate_trade(json.loads(raw)).to_dict()
    except InvalidTradeError as err:  # pragma: no cover - a failure is the finding
        pytest.fail(f"fast path accepted {obj!r}; validate_trade says {err}")
    want.pop("schema_version")
    got = _from_values([rec]).row(0)
    assert got == want
    for k in want:
        assert type(got[k]) is type(want[k]), (k, obj, got)


def test_a_clean_batch_takes_the_fast_path_and_one_bad_message_sends_it_to_the_general_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = [(b"k", orjson.dumps(m)) for m in _messages(20)]
    calls: list[int] = []
    real = decode._decode_general
    monkeypatch.setattr(
        decode, "_decode_general", lambda t, m, o: calls.append(len(m)) or real(t, m, o)
    )
    fast, none = decode_trades("t", good)
    assert calls == [] and none == [] and len(fast) == 20
    bad = (b"k", orjson.dumps({**_messages(1)[0], "price": -1}))
    slow, rejects = decode_trades("t", [*good, bad])
    assert calls == [21] and [r.reason for r in rejects] == ["non_positive_price"]
    for i in range(20):
        assert fast.row(i) == slow.row(i)


def test_sink_origins_carry_the_message_timestamp() -> None:
    """A recreated topic starts at offset 0 again; the timestamp keeps its rejects apart."""
    origins = _Origins("market.trades", [(0, 7, 1_700_000_000_123), (2, 9, 5)])
    assert len(origins) == 2
    assert origins[0] == "kafka:market.trades:0:7@1700000000123"
    assert list(origins[1:]) == ["kafka:market.trades:2:9@5"]
