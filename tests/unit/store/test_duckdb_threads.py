"""One DuckDBStore shared by threads (the API's request handlers and its live predictor): reads
and writes interleave without DuckDB refusing a call on a busy connection."""

from __future__ import annotations

import threading

from signalstack.store.duckdb import DuckDBStore


def test_counts_and_run_lookups_interleave_with_writes() -> None:
    store = DuckDBStore()
    store.migrate()
    errors: list[BaseException] = []
    go = threading.Barrier(2)

    def writer() -> None:
        go.wait()
        try:
            for i in range(400):
                store.record_model("regime", str(i), "champion", f"run-{i}", {"f1": 0.5})
        except BaseException as e:
            errors.append(e)

    def reader() -> None:
        go.wait()
        try:
            for _ in range(400):
                store.count("trades")
                store.backfill_run("no-such-run")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert errors == []
        assert store.backfill_run("no-such-run") is None
    finally:
        store.close()
