"""The columnar (Arrow) edge gives exactly what the pandas-object path gives: eligibility from
flattened condition codes, trade ids as padded bytes with an exact identity, the packed sort,
and the session fast path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from signalstack.features.bars import sort_order
from signalstack.features.conditions import bundled_rules
from signalstack.features.sessions import SessionIndex
from signalstack.features.trades import duplicate_mask, identity_hash, trade_id_bytes


@pytest.fixture(scope="module")
def rules():
    return bundled_rules()


def test_arrow_conditions_equal_object_lists(rules):
    rng = np.random.default_rng(3)
    pool = [[], [37], [14, 37], [2], [10], [38], [15], [999], [12, 14], [1, 2, 3], [-4], None]
    lists = [pool[i] for i in rng.integers(0, len(pool), 2000)]
    obj = pd.Series(lists, dtype=object)
    want = rules.flags(obj)
    assert want.unknown_codes > 0  # 999 and -4 are not in the table
    for typ in (pa.list_(pa.int64()), pa.list_(pa.int16()), pa.large_list(pa.int32())):
        arr = pa.array(lists, type=typ)
        got = rules.flags(arr)
        assert got.flags.tolist() == want.flags.tolist()
        assert got.unknown_codes == want.unknown_codes
        # a slice (non-zero offset) and a chunked column read the right rows
        sl = rules.flags(arr.slice(700, 500))
        assert sl.flags.tolist() == want.flags[700:1200].tolist()
        ch = rules.flags(pa.chunked_array([arr.slice(0, 999), arr.slice(999)]))
        assert ch.flags.tolist() == want.flags.tolist()


def test_arrow_null_list_with_hidden_values_counts_as_regular(rules):
    # a null slot whose offsets still span child values (legal Arrow): those values are ignored
    values = pa.array([15, 15, 2], type=pa.int64())
    offsets = pa.array([0, 2, 3], type=pa.int32())
    arr = pa.ListArray.from_arrays(offsets, values, mask=pa.array([True, False]))
    assert arr.null_count == 1
    assert rules.flags(arr).flags.tolist() == [rules.flags_for([]), rules.flags_for([2])]
    with pytest.raises(TypeError):
        rules.flags(pa.array([1, 2]))


IDS = ["", "a", "AB", "AB\x00", "12345678", "123456789", "x" * 17, "é", "über-lang-id-ü", None]


@pytest.mark.parametrize(
    "col",
    [
        pa.array(IDS, type=pa.string()),
        pa.array(IDS, type=pa.large_string()),
        pa.array(IDS, type=pa.string()).dictionary_encode(),
        np.array(IDS, dtype=object),
    ],
    ids=["string", "large_string", "dictionary", "objects"],
)
def test_trade_id_bytes_round_trip(col):
    tid, length = trade_id_bytes(col)
    assert tid.dtype.itemsize % 8 == 0 and tid.dtype.itemsize >= len("über-lang-id-ü".encode())
    for i, s in enumerate(IDS):
        if s is None:
            assert length[i] == -1 and tid[i] == b""
        else:
            raw = s.encode()
            assert length[i] == len(raw)
            assert tid[i] == raw.rstrip(b"\x00")  # numpy drops trailing zero bytes on read
            assert tid.view(np.uint8).reshape(len(IDS), -1)[i, : len(raw)].tobytes() == raw


def test_trade_id_bytes_of_a_slice_and_of_non_strings():
    arr = pa.array(IDS, type=pa.string()).slice(3, 5)
    tid, length = trade_id_bytes(arr)
    assert [bytes(t) for t in tid] == [b"AB", b"12345678", b"123456789", b"x" * 17, "é".encode()]
    assert length.tolist() == [3, 8, 9, 17, 2]
    tid2, length2 = trade_id_bytes(np.array([7, "7", None], dtype=object))
    assert tid2[0] == tid2[1] == b"7" and length2.tolist() == [1, 1, -1]


def test_identity_hash_ignores_padding_and_separates_lengths():
    narrow, ln = trade_id_bytes(pa.array(["AB", "AB\x00", "", None]))
    wide = narrow.astype("S24")  # the same ids as kept after a batch with longer ids
    sym = np.zeros(4, np.int32)
    ex = np.ones(4, np.int64)
    h1 = identity_hash(sym, ex, narrow, ln)
    h2 = identity_hash(sym, ex, wide, ln)
    assert h1.tolist() == h2.tolist()
    assert len(set(h1.tolist())) == 4  # "AB" ≠ "AB\0", "" ≠ null
    # the key columns of exact confirmation cannot tell "AB" from "AB\0"; the hash does
    assert narrow[0] == narrow[1]
    keys = (sym, ex, narrow)
    assert not duplicate_mask(h1, keys).any()
    # other symbol or exchange: other identity
    assert identity_hash(sym + 1, ex, narrow, ln)[0] != h1[0]
    assert identity_hash(sym, ex + 1, narrow, ln)[0] != h1[0]


def test_dedup_across_widths_is_exact():
    prior, lp = trade_id_bytes(pa.array(["t1", "t2"]))
    new, ln = trade_id_bytes(pa.array(["a-much-longer-id", "t2", "t1", "t3", "t1"]))
    sp, sn = np.zeros(2, np.int32), np.zeros(5, np.int32)
    ep, en = np.full(2, 4, np.int64), np.array([4, 4, 5, 4, 4], np.int64)
    got = duplicate_mask(
        identity_hash(sn, en, new, ln),
        (sn, en, new),
        identity_hash(sp, ep, prior, lp),
        (sp, ep, prior),
    )
    # t2 (exchange 4) seen before; t1 on exchange 5 is new, the later t1 on 4 is not
    assert got.tolist() == [False, True, False, False, True]


def test_confirmation_falls_back_on_a_real_collision():
    ident = np.array([9, 9, 9, 9], dtype=np.int64)  # one hash, two different keys
    keys = (np.zeros(4, np.int32), np.zeros(4, np.int64), np.array([b"a", b"b", b"b", b"a"]))
    assert duplicate_mask(ident, keys).tolist() == [False, False, True, True]


def test_packed_sort_equals_lexsort_with_ties():
    rng = np.random.default_rng(5)
    for n, span in ((1, 10), (50, 10), (5000, 10**6), (5000, 10**15), (3000, 2**62)):
        sym = rng.integers(0, 7, n).astype(np.int32)
        ts = (1_700_000_000 * 10**9 + rng.integers(0, span, n)).astype(np.int64)
        seq = rng.integers(0, 5, n).astype(np.int64)
        want = np.lexsort((np.arange(n), seq, ts, sym))  # stable: arrival breaks the last ties
        assert sort_order(sym, ts, seq).tolist() == want.tolist()


def test_session_fast_path_equals_general_lookup():
    base = pd.Timestamp("2024-03-05 14:30", tz="UTC").value
    day = 86_400 * 10**9
    idx = SessionIndex(
        np.array([base, base + day], np.int64), np.array([base + 6 * 3600 * 10**9, base + day + 10])
    )
    rng = np.random.default_rng(1)
    cases = [
        base + rng.integers(0, 3600 * 10**9, 100),  # inside one session
        base + 6 * 3600 * 10**9 + rng.integers(0, 10**9, 100),  # after its close
        base - rng.integers(1, 10**9, 100),  # before every session
        base + rng.integers(-(10**12), 2 * day, 1000),  # everywhere
    ]
    # in and out of the span the last batch fell in (the index remembers it)
    for ts in [*cases, *cases[::-1], cases[2], cases[0], cases[2], cases[1]]:
        ts = ts.astype(np.int64)
        i = np.searchsorted(idx.starts, ts, side="right") - 1
        ok = (i >= 0) & (ts < idx.ends[np.maximum(i, 0)])
        want = np.where(ok, idx.starts[np.maximum(i, 0)], -1)
        assert idx.session_start(ts).tolist() == want.tolist()
    assert idx.session_start(np.zeros(0, np.int64)).tolist() == []
