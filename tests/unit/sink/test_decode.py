"""Columnar trade decoding keeps validate_trade's semantics: same accepted rows, same values,
same reject reasons."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from signalstack.schemas.trade import InvalidTradeError, validate_trade
from signalstack.sink.decode import decode_trades
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


def test_frame_round_trip_and_empty_batch() -> None:
    batch, rejects = decode_trades("t", [(None, orjson.dumps(m)) for m in _messages(50)])
    assert not rejects
    frame = batch.to_frame()
    assert frame["tape"].dtype == "Int64"
    assert frame["tape"].isna().to_numpy().tolist() == batch.tape_null.tolist()
    empty, none = decode_trades("t", [])
    assert len(empty) == 0 and none == [] and empty.ts_event.dtype == np.int64
