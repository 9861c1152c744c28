"""Dedup window and DLQ records (pure parts of the ingest service)."""

from __future__ import annotations

import pytest

from signalstack.ingest.dedup import DedupWindow
from signalstack.ingest.dlq import dlq_record
from signalstack.ingest.metrics import IngestMetrics

S = 1_000_000_000


def test_identity_is_remembered_for_at_least_the_horizon() -> None:
    d = DedupWindow(60 * S)
    assert not d.seen(("AAPL", 4, "1"), 0)
    assert d.seen(("AAPL", 4, "1"), 0)
    assert not d.seen(("AAPL", 12, "1"), 0)  # another exchange: another trade
    for k in range(2, 200):  # event time moves on, one trade a second
        d.seen(("AAPL", 4, str(k)), k * S)
    assert d.seen(("AAPL", 4, "150"), 200 * S)  # 50 s ago: still known
    assert d.seen(("AAPL", 4, "141"), 200 * S)  # 59 s ago: still known


def test_old_identities_are_forgotten_so_memory_stays_bounded() -> None:
    d = DedupWindow(10 * S)
    for k in range(10_000):
        d.seen(("MSFT", 1, str(k)), k * S // 10)  # 10 trades a second for 1000 s
    assert len(d) <= 2 * 10 * 10 + 2
    assert not d.seen(("MSFT", 1, "5"), 1000 * S)  # long forgotten


def test_a_fill_keeps_what_the_window_held_until_it_ends() -> None:
    d = DedupWindow(10 * S)
    d.seen(("MSFT", 1, "old"), 0)
    with d.filling():
        for k in range(1, 100):  # the first symbol's fill: 99 s of event time, ten horizons
            assert not d.seen(("AAPL", 1, str(k)), k * S)
        assert d.seen(("MSFT", 1, "old"), 1 * S)  # the second symbol still overlaps it
        assert not d.seen(("MSFT", 1, "older"), 2 * S)  # long past the window's reach...
        assert ("MSFT", 1, "older") not in d.current  # ... so not remembered
        assert len(d) <= 2 * 11
    assert not d.pinned
    assert d.seen(("AAPL", 1, "95"), 99 * S)  # the last horizon of the fill is remembered
    assert not d.seen(("MSFT", 1, "old"), 99 * S)  # and what the fill kept is forgotten now


def test_horizon_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        DedupWindow(0)


def test_dlq_record_keeps_the_raw_input_and_truncates_detail() -> None:
    rec = dlq_record('[{"ev":"T"', "bad_json", "x" * 5000, "polygon_ws", 7, None)
    assert rec["raw"] == '[{"ev":"T"' and len(rec["detail"]) == 1000 and rec["symbol"] is None
    assert "raw_b64" not in rec


def test_metric_names_follow_the_house_convention() -> None:
    m = IngestMetrics()
    names = {metric.name for metric in m.registry.collect()}
    assert names >= {
        "signalstack_ingest_messages_in", "signalstack_ingest_messages_out",
        "signalstack_ingest_rejected", "signalstack_ingest_produce_latency_seconds",
        "signalstack_ingest_reconnects", "signalstack_ingest_queue_depth",
        "signalstack_ingest_last_event_lag_seconds",
    }  # fmt: skip
    for metric in m.registry.collect():
        for sample in metric.samples:
            assert "symbol" not in sample.labels
