"""The binary COPY encoder, checked by decoding its output with an independent reader."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from signalstack.store.pgcopy import HEADER, PG_EPOCH_US, TRAILER, Column, encode


def parse(buf: bytes) -> list[list[bytes | None]]:
    assert buf.startswith(HEADER) and buf.endswith(TRAILER)
    pos, rows = len(HEADER), []
    while True:
        (nf,) = struct.unpack_from(">h", buf, pos)
        pos += 2
        if nf == -1:
            assert pos == len(buf)
            return rows
        row: list[bytes | None] = []
        for _ in range(nf):
            (ln,) = struct.unpack_from(">i", buf, pos)
            pos += 4
            if ln == -1:
                row.append(None)
            else:
                row.append(buf[pos : pos + ln])
                pos += ln
        rows.append(row)


def int2_array(b: bytes) -> list[int]:
    ndim, flags, oid = struct.unpack_from(">iii", b, 0)
    assert flags == 0 and oid == 21
    if ndim == 0:
        assert len(b) == 12
        return []
    n, lb = struct.unpack_from(">ii", b, 12)
    assert lb == 1
    out = []
    for i in range(n):
        ln, v = struct.unpack_from(">ih", b, 20 + 6 * i)
        assert ln == 2
        out.append(v)
    return out


def test_round_trip_of_every_kind_and_layout() -> None:
    ts = np.array([1_709_650_800_123_456_789, 946_684_800_000_001_000, 1_709_650_800_000_000_000])
    cols = [
        Column("ts", "timestamptz_ns", ts),
        Column("sym", "text", np.array(["AAPL", "T", "ÄPFEL"], dtype=object)),
        Column("ex", "int2", np.array([4, -3, 32767])),
        Column("px", "float8", np.array([1.5, 2.25, -0.0])),
        Column("seq", "int8", np.array([2**40, 0, -1])),
        Column("conds", "int2[]", [[12, 37], [], [14]]),
        Column("tape", "int2", np.array([1, 0, 3]), null=np.array([False, True, False])),
        Column("ok", "bool", np.array([True, False, True])),
    ]
    rows = parse(encode(cols, 3))
    assert len(rows) == 3
    by_seq = {struct.unpack(">q", r[4])[0]: r for r in rows}  # groups may reorder rows
    r0, r1, r2 = by_seq[2**40], by_seq[0], by_seq[-1]
    assert struct.unpack(">q", r0[0])[0] == 1_709_650_800_123_456 - PG_EPOCH_US  # µs, truncated
    assert struct.unpack(">q", r1[0])[0] == 1
    assert [r[1] for r in (r0, r1, r2)] == [b"AAPL", b"T", "ÄPFEL".encode()]
    assert [struct.unpack(">h", r[2])[0] for r in (r0, r1, r2)] == [4, -3, 32767]
    assert [struct.unpack(">d", r[3])[0] for r in (r0, r1, r2)] == [1.5, 2.25, -0.0]
    assert [int2_array(r[5]) for r in (r0, r1, r2)] == [[12, 37], [], [14]]
    assert r1[6] is None and struct.unpack(">h", r2[6])[0] == 3
    assert [r[7] for r in (r0, r1, r2)] == [b"\x01", b"\x00", b"\x01"]


def test_empty_and_single_layout() -> None:
    assert parse(encode([Column("a", "int8", np.array([], dtype=np.int64))], 0)) == []
    rows = parse(encode([Column("a", "text", np.array(["xy"] * 5, dtype=object))], 5))
    assert rows == [[b"xy"]] * 5


def test_out_of_range_array_element_raises_instead_of_wrapping() -> None:
    with pytest.raises(OverflowError):
        encode([Column("c", "int2[]", [[70_000]])], 1)


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="expected 2"):
        encode([Column("a", "int8", np.array([1, 2, 3]))], 2)


def test_text_with_nul_is_refused_not_truncated() -> None:
    """numpy's byte strings drop trailing NULs: "t\x00" would be sent as "t", another trade's
    id. The encoder refuses the value (ValueError, a row error) as PostgreSQL would."""
    for values in (["t\x00", "u"], ["a\x00b", "c"], ["é\x00", "x"]):
        with pytest.raises(ValueError, match="NUL"):
            encode([Column("s", "text", values)], 2)
    assert parse(encode([Column("s", "text", ["t", "é"])], 2)) == [[b"t"], ["é".encode()]]
