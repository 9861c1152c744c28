"""The embedded store's backfill_ranges refuses what the PostgreSQL schema refuses."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import duckdb
import pandas as pd
import pytest

from signalstack.store.base import BackfillRange, BackfillRun
from signalstack.store.duckdb import DuckDBStore

START = pd.Timestamp("2024-03-12 13:30", tz="UTC")


@pytest.fixture
def store() -> Iterator[DuckDBStore]:
    s = DuckDBStore(":memory:")
    s.migrate()
    s.record_backfill_run(
        BackfillRun("r1", "polygon", ("AAPL",), dt.date(2024, 3, 12), dt.date(2024, 3, 12), "ok")
    )
    yield s
    s.close()


@pytest.mark.parametrize(
    ("end", "status"),
    [
        (START, "pending"),
        (START - pd.Timedelta(minutes=1), "done"),
        (START + pd.Timedelta(minutes=1), "healed"),
    ],
)
def test_an_empty_range_or_an_unknown_status_is_refused(
    store: DuckDBStore, end: pd.Timestamp, status: str
) -> None:
    bad = BackfillRange("r1", 0, "AAPL", START, end, status)  # type: ignore[arg-type]
    with pytest.raises(duckdb.ConstraintException):
        store.record_backfill_ranges([bad])
    assert store.backfill_ranges("r1") == []
    good = BackfillRange("r1", 0, "AAPL", START, START + pd.Timedelta(minutes=1), "done")
    store.record_backfill_ranges([good])
    assert [r.status for r in store.backfill_ranges("r1")] == ["done"]
