"""Fixtures of the training tests: explicit sessions, a store of simulated sessions."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest
from tests.unit.training.training_helpers import SESSIONS

from signalstack.features.sessions import SessionIndex
from signalstack.store.duckdb import DuckDBStore
from signalstack.training.frames import SimulatedData, simulate_into_store


@pytest.fixture
def sessions() -> SessionIndex:
    return SESSIONS


@pytest.fixture
def sim_store() -> Iterator[Callable[..., SimulatedData]]:
    """Factory: a fresh in-memory DuckDB store filled with seeded simulated sessions."""
    opened: list[DuckDBStore] = []

    def make(seed: int = 5, days: int = 2, symbols: Sequence[str] = ("AAA", "BBB", "CCC"),
             trades_per_day: int = 8_000) -> SimulatedData:  # fmt: skip
        store = DuckDBStore()
        store.migrate()
        opened.append(store)
        return simulate_into_store(
            store, days=days, symbols=symbols, seed=seed, trades_per_day=trades_per_day
        )

    yield make
    for s in opened:
        s.close()
