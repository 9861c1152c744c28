"""The FastAPI helper answers the same paths with the same codes and bodies as the threaded
server (both go through ``probe``): what the serving app adopts."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter

from signalstack.observability import HealthServer
from signalstack.observability.fastapi import health_router


class Flag:
    def __init__(self) -> None:
        self.ok = False

    def __call__(self) -> tuple[bool, str]:
        return (True, "ok") if self.ok else (False, "models not loaded")


@pytest.fixture
def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    Counter("signalstack_test_requests", "Requests.", registry=reg).inc(3)
    return reg


def _app(flag: Flag, registry: CollectorRegistry, **kw: bool) -> FastAPI:
    app = FastAPI()
    app.include_router(health_router(ready=(flag,), registry=registry, **kw))
    return app


@pytest.fixture
def both(registry: CollectorRegistry) -> Iterator[tuple[Flag, TestClient, httpx.Client]]:
    flag = Flag()
    srv = HealthServer("127.0.0.1", 0, registry, ready=(flag,)).start()
    try:
        with (
            TestClient(_app(flag, registry)) as api,
            httpx.Client(base_url=srv.url, timeout=10) as plain,
        ):
            yield flag, api, plain
    finally:
        srv.stop()


@pytest.mark.parametrize("ready", [False, True])
def test_same_answers_as_the_threaded_server(
    both: tuple[Flag, TestClient, httpx.Client], ready: bool
) -> None:
    flag, api, plain = both
    flag.ok = ready
    for path in ("/health", "/health/live", "/health/ready"):
        a, b = api.get(path), plain.get(path)
        assert (a.status_code, a.json()) == (b.status_code, b.json()), path
        assert a.headers["content-type"] == b.headers["content-type"] == "application/json"
    assert api.get("/health/ready").status_code == (200 if ready else 503)
    a, b = api.get("/metrics"), plain.get("/metrics")
    assert a.headers["content-type"] == b.headers["content-type"]
    assert "signalstack_test_requests_total 3.0" in a.text and a.text == b.text
    om = api.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert om.text.endswith("# EOF\n")


def test_an_app_keeps_its_own_health_and_metrics(registry: CollectorRegistry) -> None:
    flag = Flag()
    app = _app(flag, registry, metrics=False, health_alias=False)
    with TestClient(app) as api:
        assert api.get("/health/live").status_code == 200
        assert api.get("/health/ready").status_code == 503
        assert api.get("/health").status_code == 404
        assert api.get("/metrics").status_code == 404
