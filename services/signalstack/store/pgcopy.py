"""Vectorised encoder for PostgreSQL's binary COPY format (numpy, no per-value Python work).

asyncpg's ``copy_records_to_table`` encodes value by value in the event-loop thread, which costs
as much CPU as the server spends ingesting. Here rows are grouped by their variable-length
signature (text lengths, array lengths, NULL pattern); inside a group every row has the same
byte layout, so the group is one numpy structured array filled column by column and dumped with
``tobytes()``. Row order inside a COPY does not matter, so groups are emitted one after another.

Format (PostgreSQL docs, "COPY … BINARY"): 11-byte signature, int32 flags, int32 extension
length; per tuple an int16 field count, then per field an int32 byte length (-1 = NULL) and the
value in network byte order; an int16 -1 trailer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from signalstack.store.base import text_has_nul

HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER: Final = b"\xff\xff"
PG_EPOCH_US: Final = 946_684_800_000_000  # 2000-01-01 in µs since the Unix epoch
INT2_OID: Final = 21

Kind = Literal["int2", "int4", "int8", "float8", "bool", "timestamptz_ns", "text", "int2[]"]

_FIXED: Final[dict[str, str]] = {
    "int2": ">i2",
    "int4": ">i4",
    "int8": ">i8",
    "float8": ">f8",
    "bool": "u1",
    "timestamptz_ns": ">i8",
}


@dataclass(frozen=True, slots=True)
class Column:
    """One COPY column. ``values``: numpy array (fixed kinds), str sequence (text) or sequence of
    int lists (int2[]). ``null``: optional boolean mask of NULLs (fixed kinds and text)."""

    name: str
    kind: Kind
    values: Any
    null: npt.NDArray[np.bool_] | None = None


@dataclass(slots=True)
class _Prepared:
    kind: str
    values: Any  # fixed: ndarray; text: 'S' ndarray; int2[]: list of lists
    null: npt.NDArray[np.bool_] | None
    var: npt.NDArray[np.int64] | None  # per-row variable length (text bytes, array count)


def _text(
    values: Sequence[str] | npt.NDArray[Any],
) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
    arr = np.asarray(values, dtype=object)
    codes, uniq = pd.factorize(arr)
    if len(uniq) * 4 <= len(arr):  # few distinct values (symbols, sources): encode those
        enc_uniq, lens_uniq = _text_each(np.asarray(uniq, dtype=object))
        return enc_uniq[codes], lens_uniq[codes]
    return _text_each(arr)


def _text_each(arr: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
    if text_has_nul(arr).any():
        # PostgreSQL text cannot hold NUL, and numpy's 'S' strings would drop a trailing one
        # without a word ("t\x00" would be stored as "t"): refuse the rows, as the server does.
        raise ValueError("text value contains NUL (0x00), which PostgreSQL text cannot store")
    try:
        enc = arr.astype("S")  # ASCII fast path (symbols, ids, sources are ASCII)
    except UnicodeEncodeError:
        enc = np.array([str(v).encode("utf-8") for v in arr], dtype=object).astype("S")
    return enc, np.char.str_len(enc).astype(np.int64)


def _prepare(col: Column, n: int) -> _Prepared:
    null = None if col.null is None else np.asarray(col.null, dtype=bool)
    if null is not None and not null.any():
        null = None
    if col.kind in _FIXED:
        vals = np.asarray(col.values)
        if col.kind == "timestamptz_ns":
            vals = vals.astype(np.int64) // 1000 - PG_EPOCH_US
        if null is not None:
            vals = np.where(null, 0, vals)
        if len(vals) != n:
            raise ValueError(f"column {col.name}: {len(vals)} values, expected {n}")
        return _Prepared(col.kind, vals, null, None)
    if col.kind == "text":
        enc, lens = _text(col.values)
        if null is not None:
            lens = np.where(null, 0, lens)
        return _Prepared("text", enc, null, lens)
    if col.kind == "int2[]":
        lists = list(col.values)
        counts = np.fromiter(map(len, lists), dtype=np.int64, count=n)
        return _Prepared("int2[]", lists, None, counts)
    raise ValueError(f"unsupported COPY kind {col.kind!r}")


def _group_keys(prepared: list[_Prepared], n: int) -> npt.NDArray[np.int64]:
    """One integer per row identifying its byte layout (0 when all rows share one layout)."""
    key = np.zeros(n, dtype=np.int64)
    for p in prepared:
        parts: list[npt.NDArray[np.int64]] = []
        if p.var is not None:
            parts.append(p.var)
        if p.null is not None:
            parts.append(p.null.astype(np.int64))
        for part in parts:
            _, inv = np.unique(part, return_inverse=True)
            span = int(inv.max()) + 1 if n else 1
            key = key * span + inv.astype(np.int64)
            # Keep keys small: renumber after each combination.
            _, key = np.unique(key, return_inverse=True)
            key = key.astype(np.int64)
    return key


def _encode_group(prepared: list[_Prepared], idx: npt.NDArray[np.intp]) -> bytes:
    first = int(idx[0])
    fields: list[tuple[Any, ...]] = [("nf", ">i2")]
    for j, p in enumerate(prepared):
        fields.append((f"l{j}", ">i4"))
        if p.null is not None and p.null[first]:
            continue
        if p.kind in _FIXED:
            fields.append((f"v{j}", _FIXED[p.kind]))
        elif p.kind == "text":
            assert p.var is not None
            width = int(p.var[first])
            if width:
                fields.append((f"v{j}", f"S{width}"))
        else:  # int2[]
            assert p.var is not None
            count = int(p.var[first])
            fields += [(f"n{j}", ">i4"), (f"f{j}", ">i4"), (f"o{j}", ">i4")]
            if count:
                fields += [(f"d{j}", ">i4"), (f"b{j}", ">i4")]
                fields.append((f"e{j}", [("len", ">i4"), ("v", ">i2")], (count,)))
    arr = np.zeros(len(idx), dtype=np.dtype(fields))
    arr["nf"] = len(prepared)
    for j, p in enumerate(prepared):
        if p.null is not None and p.null[first]:
            arr[f"l{j}"] = -1
            continue
        if p.kind in _FIXED:
            arr[f"l{j}"] = np.dtype(_FIXED[p.kind]).itemsize
            arr[f"v{j}"] = p.values[idx]
        elif p.kind == "text":
            assert p.var is not None
            width = int(p.var[first])
            arr[f"l{j}"] = width
            if width:
                arr[f"v{j}"] = p.values[idx].astype(f"S{width}")
        else:
            assert p.var is not None
            count = int(p.var[first])
            arr[f"l{j}"] = 12 + (8 + 6 * count if count else 0)
            arr[f"n{j}"] = 1 if count else 0
            arr[f"o{j}"] = INT2_OID
            if count:
                arr[f"d{j}"] = count
                arr[f"b{j}"] = 1
                arr[f"e{j}"]["len"] = 2
                lists = p.values
                arr[f"e{j}"]["v"] = np.array([lists[i] for i in idx.tolist()], dtype=np.int16)
    return arr.tobytes()


_U1: Final = np.dtype(np.uint8)
_ARRAY_HEAD: Final = np.dtype(
    [("ndim", ">i4"), ("flags", ">i4"), ("oid", ">i4"), ("dim", ">i4"), ("lb", ">i4")]
)
_ELEM: Final = np.dtype([("len", ">i4"), ("v", ">i2")])


def _put(
    buf: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], values: npt.NDArray[Any]
) -> None:
    """Write one fixed-width big-endian value per row at byte offsets ``starts``."""
    if len(starts) == 0:
        return
    w = values.dtype.itemsize
    idx = starts[:, None] + np.arange(w, dtype=np.int64)
    buf[idx] = np.ascontiguousarray(values).view(_U1).reshape(len(starts), w)


def _spread(
    starts: npt.NDArray[np.int64], counts: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """For rows with ``counts`` items each: (row index, index within the row) of every item."""
    total = int(counts.sum())
    rows = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return rows, within


def _field_size(p: _Prepared, n: int) -> npt.NDArray[np.int64]:
    """Bytes of this field in each row, its 4-byte length word included."""
    if p.kind in _FIXED:
        size = np.full(n, 4 + np.dtype(_FIXED[p.kind]).itemsize, dtype=np.int64)
        return size if p.null is None else np.where(p.null, 4, size)
    assert p.var is not None
    if p.kind == "text":
        return 4 + p.var
    return 4 + 12 + np.where(p.var > 0, 8 + 6 * p.var, 0)


def encode_scatter(prepared: list[_Prepared], n: int) -> bytes:
    """Tuples written straight into one byte buffer at computed offsets (any mix of layouts,
    a fixed number of numpy calls per column: the small-batch path)."""
    sizes = [_field_size(p, n) for p in prepared]
    row_size = np.full(n, 2, dtype=np.int64)
    for size in sizes:
        row_size += size
    row_start = np.cumsum(row_size) - row_size
    buf = np.zeros(int(row_size.sum()), dtype=np.uint8)
    _put(buf, row_start, np.full(n, len(prepared), dtype=">i2"))
    pos = row_start + 2
    for p, size in zip(prepared, sizes, strict=True):
        length = size - 4
        if p.null is not None:
            length = np.where(p.null, -1, length)
        _put(buf, pos, length.astype(">i4"))
        body = pos + 4
        if p.kind in _FIXED:
            vals = np.asarray(p.values).astype(_FIXED[p.kind])
            if p.null is None:
                _put(buf, body, vals)
            else:
                keep = ~p.null
                _put(buf, body[keep], vals[keep])
        elif p.kind == "text":
            assert p.var is not None
            lens = p.var
            enc = p.values
            w = enc.dtype.itemsize
            if w and lens.any():
                rows, within = _spread(body, lens)
                raw = np.frombuffer(enc.tobytes(), dtype=np.uint8)
                buf[body[rows] + within] = raw[rows * w + within]
        else:  # int2[]
            assert p.var is not None
            counts = p.var
            head = np.zeros(n, dtype=_ARRAY_HEAD)
            head["ndim"] = counts > 0
            head["oid"] = INT2_OID
            head["dim"] = counts
            head["lb"] = 1
            full = counts > 0
            _put(buf, body[full], head[full])
            empty = ~full
            if empty.any():
                idx = body[empty][:, None] + np.arange(12, dtype=np.int64)
                buf[idx] = head[empty].view(_U1).reshape(-1, 20)[:, :12]
            total = int(counts.sum())
            if total:
                flat = np.fromiter(
                    (v for lst in p.values for v in lst), dtype=np.int64, count=total
                )
                if flat.min() < -32768 or flat.max() > 32767:
                    raise OverflowError("int2[] element out of range")
                elems = np.empty(total, dtype=_ELEM)
                elems["len"] = 2
                elems["v"] = flat
                rows, within = _spread(body, counts)
                _put(buf, body[rows] + 20 + 6 * within, elems)
        pos = pos + size
    return buf.tobytes()


SCATTER_MAX_ROWS: Final = 4096


def encode(columns: Sequence[Column], n: int) -> bytes:
    """The complete binary COPY payload for ``n`` rows of ``columns`` (in this column order)."""
    if n == 0:
        return HEADER + TRAILER
    prepared = [_prepare(c, n) for c in columns]
    if n <= SCATTER_MAX_ROWS:
        return HEADER + encode_scatter(prepared, n) + TRAILER
    key = _group_keys(prepared, n)
    chunks = [HEADER]
    if int(key.max()) == 0:
        chunks.append(_encode_group(prepared, np.arange(n)))
    else:
        order = np.argsort(key, kind="stable")
        bounds = np.flatnonzero(np.diff(key[order])) + 1
        for idx in np.split(order, bounds):
            chunks.append(_encode_group(prepared, idx))
    chunks.append(TRAILER)
    return b"".join(chunks)
