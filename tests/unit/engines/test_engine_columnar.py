"""The local engine on Arrow record batches gives the same rows, DLQ and counts as on pandas
frames; the state machine's lazily kept batches and the Spark state codec keep identities."""

from __future__ import annotations

import datetime as dt

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest

from signalstack.engines import state_codec
from signalstack.engines.alloc import reuse_freed_arrays
from signalstack.engines.base import ListSink
from signalstack.engines.core import FeatureStateMachine
from signalstack.engines.local import LocalEngine, late_records
from signalstack.engines.ticks import in_batches, seeded_ticks, to_arrow
from signalstack.features.conditions import bundled_rules
from signalstack.features.sessions import session_index
from signalstack.features.trades import SymbolCodes, identity_hash, trade_id_bytes


@pytest.fixture(scope="module")
def ticks() -> pd.DataFrame:
    return seeded_ticks(seed=21, minutes=40, trades_per_minute=60, late_frac=0.03, dup_frac=0.05)


def _run(batches):
    sink = ListSink()
    eng = LocalEngine(sink, lateness=dt.timedelta(seconds=5))
    for b in batches:
        eng.process(b)
    eng.flush()
    return eng, sink


@pytest.mark.parametrize("batch_size", [700, 5000])
def test_arrow_batches_equal_pandas_frames(ticks, batch_size):
    frames = in_batches(ticks, batch_size)
    e1, s1 = _run(frames)
    e2, s2 = _run([to_arrow(b) for b in frames])
    assert e1.stats.late > 0 and e1.stats.duplicates > 0 and e1.stats.out_of_session > 0
    assert vars(e1.stats) == vars(e2.stats)
    pd.testing.assert_frame_equal(s1.all_bars(), s2.all_bars(), check_exact=True)
    pd.testing.assert_frame_equal(s1.all_features(), s2.all_features(), check_exact=True)
    p1 = [orjson.loads(r.payload) for r in s1.dlq]
    p2 = [orjson.loads(r.payload) for r in s2.dlq]
    assert p1 == p2 and len(p1) == e1.stats.late


def test_arrow_table_with_chunks_and_plain_string_symbols(ticks):
    frames = in_batches(ticks, 4000)
    tables = []
    for b in frames:
        rb = to_arrow(b)
        rb = rb.set_column(0, "symbol", rb.column(0).cast(pa.string()))
        half = len(rb) // 2
        tables.append(pa.Table.from_batches([rb.slice(0, half), rb.slice(half)]))
    e1, s1 = _run(frames)
    e2, s2 = _run(tables)
    assert vars(e1.stats) == vars(e2.stats)
    pd.testing.assert_frame_equal(s1.all_features(), s2.all_features(), check_exact=True)


def test_pending_read_between_ingest_and_finalize(ticks):
    rules, sessions = bundled_rules(), session_index()
    m = FeatureStateMachine(rules, sessions)
    b = to_arrow(in_batches(ticks, 3000)[2])
    step = m.ingest(b, 0)
    kept = len(b) - step.duplicates - step.out_of_session - len(step.late_rows)
    p = m.pending  # materialises the lazily kept rows
    assert len(p) == kept
    assert len(set(p.ident.tolist())) == kept  # deduplicated
    assert step.duplicates > 0
    again = m.ingest(b, 0)  # the same batch again: every in-session row is a duplicate now
    assert again.duplicates == len(b) - again.out_of_session
    assert len(m.pending) == kept


def test_state_codec_round_trip_keeps_identity(ticks):
    rules, sessions = bundled_rules(), session_index()
    names = ["AAPL", "MSFT", "SPY"]
    m = FeatureStateMachine(rules, sessions, SymbolCodes(names))
    b = to_arrow(in_batches(ticks, 2000)[3])
    m.ingest(b, 0)
    before = m.pending
    blob_p, blob_h = state_codec.save(m)
    m2 = FeatureStateMachine(rules, sessions, SymbolCodes(names))
    state_codec.load(m2, blob_p, blob_h)
    after = m2.pending
    assert after.ident.tolist() == before.ident.tolist()
    assert after.trade_id.tolist() == before.trade_id.tolist()
    # re-sent after the restore, every in-session trade of the batch is a duplicate
    again = m2.ingest(b, 0)
    assert again.duplicates == len(b) - again.out_of_session > 0
    assert len(m2.pending) == len(before)


def test_state_codec_reads_the_earlier_layout():
    # earlier blobs held trade_id strings and another hash: identities are recomputed
    sym = np.array([0, 0], np.int32)
    ex = np.array([4, 4], np.int64)
    cols = {
        "sym": sym,
        "ts": np.array([1, 2], np.int64),
        "seq": np.array([1, 2], np.int64),
        "price": np.array([1.0, 2.0]),
        "size": np.array([1.0, 1.0]),
        "flags": np.array([15, 15], np.uint8),
        "session": np.array([0, 0], np.int64),
        "exchange": ex,
        "trade_id": np.array(["t1", "t22"], dtype=object),
        "ident": np.array([123, 456], np.int64),
    }
    p = state_codec.decode_pending(state_codec._to_ipc(cols))
    tid, ln = trade_id_bytes(pa.array(["t1", "t22"]))
    assert p.ident.tolist() == identity_hash(sym, ex, tid, ln).tolist()
    assert p.trade_id.tolist() == [b"t1", b"t22"]


def test_allocator_setting_is_accepted():
    assert reuse_freed_arrays() in (True, False)
    assert reuse_freed_arrays(1 << 20) in (True, False)


@pytest.mark.parametrize("n_late", [1, 3, 40])
def test_late_records_of_arrow_rows_equal_those_of_the_frame(ticks, n_late):
    # a few late rows are read by one-row slices, many by a take: the same records either way
    frame = in_batches(ticks, 500)[1]
    rows = np.sort(np.random.default_rng(n_late).choice(len(frame), n_late, replace=False))
    from_frame = late_records(frame, rows, 0)
    from_arrow = late_records(to_arrow(frame), rows, 0)
    assert [orjson.loads(r.payload) for r in from_arrow] == [
        orjson.loads(r.payload) for r in from_frame
    ]
    assert [r.key for r in from_arrow] == frame["symbol"].iloc[rows].tolist()


def test_nothing_emitted_reads_as_empty_frames_of_the_emitted_shape(ticks):
    m = FeatureStateMachine(bundled_rules(), session_index())
    m.ingest(to_arrow(in_batches(ticks, 3000)[0]), 0)
    none = m.finalize(0)  # the watermark has not passed a minute
    assert (none.n_bars, none.n_features) == (0, 0)
    some = m.finalize(2**62)
    assert some.n_bars == len(some.bars) > 0 and some.n_features == len(some.features)
    for empty, full in ((none.bars, some.bars), (none.features, some.features)):
        assert empty.empty
        assert empty.dtypes.to_dict() == full.dtypes.to_dict()
        assert list(empty.columns) == list(full.columns)
    none.bars["x"] = 1  # a caller's edit stays in its own frame
    assert "x" not in m.finalize(0).bars.columns
