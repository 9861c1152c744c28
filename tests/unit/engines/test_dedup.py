"""The pending identities (runs sorted by hash) answer exactly as ``duplicate_mask`` against
the pending rows, through adds, merges of runs, forced hash collisions, ids of mixed widths
and rows leaving by event time."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from signalstack.engines.dedup import PendingIdentities
from signalstack.features.trades import duplicate_mask

row_st = st.tuples(
    st.integers(0, 5),  # hash: a few values, so collisions are the rule
    st.integers(0, 1),  # symbol code
    st.integers(1, 2),  # exchange
    st.sampled_from([b"a", b"b", b"abcdefghij", b"abcdefghik"]),  # S8 and S16 ids
    st.integers(0, 9),  # event minute
)


def _arrays(rows: list[tuple[int, int, int, bytes, int]]):
    ident = np.array([r[0] for r in rows], dtype=np.int64)
    sym = np.array([r[1] for r in rows], dtype=np.int32)
    exchange = np.array([r[2] for r in rows], dtype=np.int64)
    width = 16 if any(len(r[3]) > 8 for r in rows) else 8
    tid = np.array([r[3] for r in rows], dtype=f"S{width}")
    ts = np.array([r[4] for r in rows], dtype=np.int64)
    return ident, sym, exchange, tid, ts


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.lists(row_st, max_size=12), st.integers(0, 10)), min_size=1, max_size=12
    )
)
def test_same_answer_as_duplicate_mask_against_the_pending_rows(steps):
    ids = PendingIdentities()
    pending: list[tuple[int, int, int, bytes, int]] = []
    for rows, cut in steps:
        if rows:
            ident, sym, exchange, tid, ts = _arrays(rows)
            if pending:
                p = _arrays(pending)
                want = duplicate_mask(ident, (sym, exchange, tid), p[0], p[1:4])
            else:
                want = duplicate_mask(ident, (sym, exchange, tid))
            got = ids.duplicates(ident, (sym, exchange, tid))
            assert got.tolist() == want.tolist()
            keep = ~got
            ids.add(ident[keep], sym[keep], exchange[keep], tid[keep], ts[keep])
            pending += [r for r, k in zip(rows, keep, strict=True) if k]
        ids.drop_before(cut)
        pending = [r for r in pending if r[4] >= cut]
        assert len(ids) == len(pending)


def test_runs_stay_few_as_batches_are_added():
    ids = PendingIdentities()
    rng = np.random.default_rng(0)
    for i in range(1000):
        ident = rng.integers(-(2**62), 2**62, 10)
        z = np.zeros(10, np.int64)
        ids.add(ident, z.astype(np.int32), z, np.zeros(10, "S8"), z + i)
    assert len(ids) == 10_000
    assert ids.runs <= 12  # geometric sizes: about log2(1000)
