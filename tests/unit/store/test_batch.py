"""TradeBatch: the numpy constraint split agrees with prepare_trades; the row packer (small
batches), the scatter encoder and the layout-grouped encoder (large ones) emit the same tuples;
encoding ahead gives the same bytes as encoding at write time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from signalstack.store import pgcopy
from signalstack.store.batch import TradeBatch, check_batch
from signalstack.store.frames import prepare_trades
from signalstack.store.synthetic import synthetic_trades
from signalstack.store.tradecopy import ROWS_MAX, encode_trade_rows
from signalstack.store.writer import _body, encode_ahead, trade_columns


def _batch(n: int, seed: int = 1) -> TradeBatch:
    typed, _ = prepare_trades(synthetic_trades(n, seed=seed))
    return TradeBatch.from_typed(typed)


def _tuples(body: bytes) -> list[bytes]:
    """Split a COPY body into its tuples (via the field lengths)."""
    out, pos = [], 0
    while pos < len(body):
        start = pos
        nf = int.from_bytes(body[pos : pos + 2], "big", signed=True)
        pos += 2
        for _ in range(nf):
            ln = int.from_bytes(body[pos : pos + 4], "big", signed=True)
            pos += 4 + max(ln, 0)
        out.append(body[start:pos])
    return out


def test_check_batch_matches_prepare_trades() -> None:
    df = synthetic_trades(300, seed=3)
    df.loc[3, "price"] = 0.0
    df.loc[7, "size"] = -2.0
    df.loc[11, "exchange"] = 40_000
    df["tape"] = df["tape"].astype(object)
    df.loc[13, "tape"] = -40_000
    df.loc[17, "trade_id"] += "\x00"  # NUL, trailing: a byte string would drop it
    df.loc[19, "symbol"] = "A\x00PL"
    df.loc[23, "source"] = "\x00"
    expected, rejects = prepare_trades(df)
    assert [r.reason for r in rejects][-3:] == ["text_has_nul"] * 3
    raw = TradeBatch(
        symbol=df["symbol"].to_numpy(dtype=object),
        ts_event=df["ts_event"].to_numpy(dtype=np.int64),
        price=df["price"].to_numpy(dtype=np.float64),
        size=df["size"].to_numpy(dtype=np.float64),
        exchange=df["exchange"].to_numpy(dtype=np.int64),
        trade_id=df["trade_id"].to_numpy(dtype=object),
        sequence=df["sequence"].to_numpy(dtype=np.int64),
        conditions=list(df["conditions"]),
        tape=np.array([0 if pd.isna(t) else int(t) for t in df["tape"]], dtype=np.int64),
        tape_null=df["tape"].isna().to_numpy(),
        source=df["source"].to_numpy(dtype=object),
        ts_ingest=df["ts_ingest"].to_numpy(dtype=np.int64),
    )
    ok, mine = check_batch(raw)
    assert [r.reason for r in mine] == [r.reason for r in rejects]
    assert [r.key for r in mine] == [r.key for r in rejects]
    pd.testing.assert_frame_equal(ok.to_frame(), expected, check_dtype=False)
    assert check_batch(ok)[0] is ok  # nothing to split: the same batch (and any cached body)


def test_scatter_and_grouped_encoders_emit_the_same_tuples() -> None:
    b = _batch(6_000)
    cols = trade_columns(b)
    prepared = [pgcopy._prepare(c, len(b)) for c in cols]
    scatter = pgcopy.encode_scatter(prepared, len(b))
    grouped = pgcopy.encode(cols, len(b))  # > SCATTER_MAX_ROWS: layout-grouped
    assert len(b) > pgcopy.SCATTER_MAX_ROWS
    body = grouped[len(pgcopy.HEADER) : -len(pgcopy.TRAILER)]
    assert sorted(_tuples(scatter)) == sorted(_tuples(body))
    assert _tuples(scatter)[0] != _tuples(scatter)[1]


def test_encode_ahead_is_the_same_bytes_and_dropped_by_take() -> None:
    b = _batch(500, seed=9)
    fresh = _body(b)
    ahead = encode_ahead(b)
    assert ahead.copy_body == fresh and _body(ahead) == fresh
    part = ahead.take(slice(0, 10))
    assert part.copy_body is None and _body(part) == _body(_batch(500, seed=9).take(slice(0, 10)))


def test_row_packer_emits_the_numpy_encoders_bytes_for_every_layout() -> None:
    b = _batch(400, seed=4)
    b.symbol[:3] = ["ÄPFEL", "T", "BRK.B"]  # multi-byte UTF-8, short, punctuation
    b.trade_id[5] = "x" * 40
    b.conditions[7] = [1, -2, 32767, -32768, 9]
    b.tape_null[:50] = True
    b.tape[:50] = 0
    assert {len(c) for c in b.conditions} >= {0, 1, 2, 5} and b.tape_null.any()
    want = pgcopy.encode(trade_columns(b), len(b))  # ≤ SCATTER_MAX_ROWS: same row order
    assert pgcopy.HEADER + encode_trade_rows(b) + pgcopy.TRAILER == want
    assert len(b) <= ROWS_MAX and _body(b) == want[len(pgcopy.HEADER) : -len(pgcopy.TRAILER)]


def test_row_packer_refuses_what_a_column_cannot_hold() -> None:
    b = _batch(5)
    b.conditions[2] = [70_000]
    with pytest.raises(OverflowError):
        encode_trade_rows(b)
    b = _batch(5)
    b.exchange[1] = 40_000
    with pytest.raises(OverflowError):
        encode_trade_rows(b)


def test_split_by_symbol_partitions_rows_keeps_each_symbol_whole_and_balances() -> None:
    b = _batch(3_000, seed=6)
    parts = b.split_by_symbol(2)
    assert len(parts) == 2 and sum(len(p) for p in parts) == len(b)
    owners = [set(p.symbol) for p in parts]
    assert not owners[0] & owners[1]  # no symbol in both
    assert sorted(_tuples(b"".join(_body(p) for p in parts))) == sorted(_tuples(_body(b)))
    counts = pd.Series(b.symbol).value_counts()
    assert abs(len(parts[0]) - len(parts[1])) <= counts.max()  # greedy: off by ≤ one symbol
    assert b.split_by_symbol(1)[0] is b and len(b.take(b.symbol == "AAPL").split_by_symbol(2)) == 1
