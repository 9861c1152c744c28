"""Session-scoped real servers for the whole suite (the role testcontainers plays elsewhere).

Each fixture starts the real component from the set-up cache (`make setup`) on a free loopback
port, waits until it answers, yields it, and stops it at the end of the session. A component that
is not installed fails loudly with the command that fixes it; nothing is ever skipped.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from signalstack.devstack import KafkaServer, MlflowServer, PrometheusServer, TimescaleServer
from signalstack.devstack.base import Server

_started: list[Server] = []

# Servers are started in the background as soon as collection shows a test needs them, so their
# start-up overlaps (MLflow's Python start-up dominates); the fixture then waits for its server.
_FACTORIES: dict[str, Callable[[], Server]] = {
    "kafka": KafkaServer,
    "timescale": TimescaleServer,
    "timescale_db": TimescaleServer,
    "mlflow": MlflowServer,
    "prometheus": PrometheusServer,
}
_ALIASES = {"timescale_db": "timescale"}


class _Warm:
    def __init__(self, factory: Callable[[], Server]) -> None:
        self.server: Server | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(factory,), daemon=True)
        self.thread.start()

    def _run(self, factory: Callable[[], Server]) -> None:
        try:
            server = factory()
            self.server = server
            server.start()
        except BaseException as err:  # re-raised in the fixture, in the test's context
            self.error = err

    def get(self) -> Server:
        self.thread.join()
        if self.error is not None:
            if self.server is not None:
                self.server.cleanup()
            raise self.error
        assert self.server is not None
        return self.server


_warm: dict[str, _Warm] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    wanted = {
        _ALIASES.get(name, name)
        for item in items
        for name in getattr(item, "fixturenames", ())
        if name in _FACTORIES
    }
    for name in sorted(wanted):
        if name not in _warm:
            _warm[name] = _Warm(_FACTORIES[name])


def _record(server: Server) -> None:
    """Append a server's pid/port/start time to $SIGNALSTACK_DEVSTACK_RECORD (the leak test)."""
    path = os.environ.get("SIGNALSTACK_DEVSTACK_RECORD")
    if not path or server.proc is None:
        return
    with open(path, "a") as fh:
        fh.write(
            json.dumps(
                {
                    "name": server.name,
                    "pid": server.proc.pid,
                    "port": getattr(server, "port", None),
                    "workdir": str(server.workdir),
                    "started_in": server.started_in,
                    "t": time.time(),
                }
            )
            + "\n"
        )


def _serve(name: str) -> Iterator[Server]:
    warm = _warm.pop(name, None) or _Warm(_FACTORIES[name])
    server = warm.get()
    _started.append(server)
    _record(server)
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaServer]:
    yield from _serve("kafka")  # type: ignore[misc]


@pytest.fixture(scope="session")
def timescale() -> Iterator[TimescaleServer]:
    yield from _serve("timescale")  # type: ignore[misc]


@pytest.fixture(scope="session")
def mlflow() -> Iterator[MlflowServer]:
    yield from _serve("mlflow")  # type: ignore[misc]


@pytest.fixture(scope="session")
def prometheus() -> Iterator[PrometheusServer]:
    yield from _serve("prometheus")  # type: ignore[misc]


@dataclass(frozen=True)
class TimescaleDatabase:
    dsn: str
    database: str


@pytest.fixture
def timescale_db(timescale: TimescaleServer) -> Iterator[TimescaleDatabase]:
    """A fresh database with the timescaledb extension, dropped after the test."""
    with timescale.database_with_timescale() as dsn:
        yield TimescaleDatabase(dsn=dsn, database=dsn.rsplit("/", 1)[1])


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def pytest_sessionfinish() -> None:
    # Servers warmed for tests that were then deselected or never ran.
    for warm in list(_warm.values()):
        warm.thread.join()
        if warm.server is not None:
            warm.server.cleanup()
    _warm.clear()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _started:
        parts = ", ".join(f"{s.name} {s.started_in:.1f}s" for s in _started if s.started_in)
        terminalreporter.write_line(f"devstack servers started: {parts}")
