"""The threaded server every plain service runs: the paths, status codes and JSON bodies."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge

from signalstack.observability import HealthServer


class Flag:
    def __init__(self) -> None:
        self.ok = False

    def __call__(self) -> tuple[bool, str]:
        return (True, "ok") if self.ok else (False, "waiting for the broker")


@pytest.fixture
def flag() -> Flag:
    return Flag()


@pytest.fixture
def server(flag: Flag) -> Iterator[HealthServer]:
    reg = CollectorRegistry()
    Gauge("signalstack_test_up", "Up.", registry=reg).set(1)
    srv = HealthServer("127.0.0.1", 0, reg, ready=(flag,)).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_paths(server: HealthServer, flag: Flag) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert server.port != 0
        m = c.get("/metrics")
        assert m.status_code == 200 and "signalstack_test_up 1.0" in m.text
        for path in ("/health", "/health/live"):
            r = c.get(path)
            assert (r.status_code, r.json()) == (200, {"status": "ok"})
        r = c.get("/health/ready")
        assert r.status_code == 503
        assert r.json() == {"status": "unavailable", "reason": "waiting for the broker"}
        assert r.headers["content-type"] == "application/json"
        flag.ok = True
        assert c.get("/health/ready?verbose=1").status_code == 200
        assert c.head("/health/ready").status_code == 200
        assert c.get("/nope").status_code == 404


def test_a_probe_answers_while_a_check_blocks(flag: Flag) -> None:
    """Each request has its own thread: a check that hangs holds back only its own request."""
    release = threading.Event()

    def slow() -> tuple[bool, str]:
        release.wait(30)
        return True, "ok"

    srv = HealthServer("127.0.0.1", 0, CollectorRegistry(), ready=(slow,)).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            t = threading.Thread(target=c.get, args=("/health/ready",), daemon=True)
            t.start()
            assert c.get("/health/live").status_code == 200
            release.set()
            t.join(10)
    finally:
        release.set()
        srv.stop()


def test_stop_frees_the_port() -> None:
    srv = HealthServer("127.0.0.1", 0).start()
    port = srv.port
    srv.stop()
    again = HealthServer("127.0.0.1", port).start()  # would raise if still bound
    again.stop()
