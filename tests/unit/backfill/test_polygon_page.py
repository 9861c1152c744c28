"""A page of /v3/trades results: validated as the ingest validates; bad results → DLQ records."""

from __future__ import annotations

import orjson

from signalstack.backfill.polygon import DLQ_SOURCE, to_page
from signalstack.store.duckdb import DuckDBStore

GOOD = {
    "conditions": [12, 37], "exchange": 4, "id": "52983525029461", "price": 171.13,
    "sequence_number": 1063, "sip_timestamp": 1710251400123456789, "size": 100, "tape": 3,
}  # fmt: skip


def test_valid_results_become_store_rows_and_bad_ones_dlq_records() -> None:
    bad_price = {**GOOD, "id": "2", "price": 0}
    no_id = {k: v for k, v in GOOD.items() if k != "id"}
    ms_time = {**GOOD, "id": "3", "sip_timestamp": 1710251400.5}  # a float: not ns
    page = to_page("AAPL", [GOOD, bad_price, no_id, ms_time], ts_ingest=1)
    assert page.results == 4 and len(page.trades) == 1
    row = page.trades.iloc[0]
    assert row["ts_event"] == GOOD["sip_timestamp"] and row["trade_id"] == GOOD["id"]
    assert row["source"] == "polygon_rest" and list(row["conditions"]) == [12, 37]
    assert page.max_ts_ns == GOOD["sip_timestamp"]
    assert [r.reason for r in page.rejects] == ["non_positive_price", "missing_field", "bad_type"]
    assert all(r.source == DLQ_SOURCE and r.key == "AAPL" for r in page.rejects)
    assert orjson.loads(page.rejects[0].payload) == bad_price  # the raw result, verbatim

    store = DuckDBStore(":memory:")
    store.migrate()
    try:
        assert store.write_trades(page.trades) == 1
        assert store.write_dlq(page.rejects) == 3
        assert store.write_dlq(page.rejects) == 0  # a re-fetched page adds no reject twice
    finally:
        store.close()


def test_an_empty_page() -> None:
    page = to_page("AAPL", [], ts_ingest=1)
    assert page.trades.empty and page.rejects == [] and page.max_ts_ns is None
