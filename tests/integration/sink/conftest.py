"""Fixtures of the sink integration tests."""

from __future__ import annotations

import pytest

from signalstack.store.timescale import TimescaleStore


@pytest.fixture
def migrated(timescale_db) -> str:
    """A fresh TimescaleDB database with the schema: its DSN."""
    s = TimescaleStore(timescale_db.dsn)
    s.migrate()
    s.close()
    return timescale_db.dsn
