"""Each service's /metrics and health endpoints come from the one module
(signalstack.observability): the running ingest and sink serve through its ``HealthServer``,
with its JSON bodies, and no service module defines an HTTP server of its own."""

from __future__ import annotations

import ast
import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from signalstack.config import KafkaSettings, PolygonSettings, Settings
from signalstack.ingest import IngestService, IngestSettings
from signalstack.observability import HealthServer
from signalstack.sink import KafkaSink, SinkSettings
from signalstack.store.duckdb import DuckDBStore

PACKAGE = Path(__file__).resolve().parents[3] / "services" / "signalstack"
NOWHERE = "127.0.0.1:9"  # nothing listens: the services wait for the broker


def test_no_service_module_runs_its_own_http_server() -> None:
    """http.server and prometheus_client's own servers appear only in the one module."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("observability/"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module + "." + a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for n in names:
                if n.startswith("http.server") or n.split(".")[-1] in (
                    "start_http_server",
                    "start_wsgi_server",
                    "make_wsgi_app",
                    "make_asgi_app",
                ):
                    offenders.append(f"{rel}: {n}")
    assert offenders == []


@pytest.fixture
def sink() -> Iterator[KafkaSink]:
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=NOWHERE))
    config = SinkSettings(http_host="127.0.0.1", http_port=0, topics=("t", "f", "p"))
    store = DuckDBStore()
    s = KafkaSink(settings, store, config)
    try:
        yield s
    finally:
        if s.http is not None:
            s.http.stop()
        s.consumer.close()
        store.close()


def test_sink_endpoints_come_from_the_one_module(sink: KafkaSink) -> None:
    sink._start_http()
    assert isinstance(sink.http, HealthServer)
    with httpx.Client(base_url=sink.http.url, timeout=10) as c:
        assert c.get("/health/live").json() == {"status": "ok"}
        assert c.get("/health").status_code == 200
        r = c.get("/health/ready")  # nothing assigned yet
        assert r.status_code == 503
        assert r.json() == {"status": "unavailable", "reason": "no partitions assigned"}
        assert "signalstack_sink_rows_written_total" in c.get("/metrics").text


def test_sink_without_a_port_serves_nothing() -> None:
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=NOWHERE))
    store = DuckDBStore()
    s = KafkaSink(settings, store, SinkSettings(http_port=None, topics=("t", "f", "p")))
    try:
        s._start_http()
        assert s.http is None
    finally:
        s.consumer.close()
        store.close()


@pytest.mark.slow
def test_ingest_endpoints_come_from_the_one_module() -> None:
    """While the broker does not answer the ingest waits, probes answered by the one module."""
    settings = Settings(
        polygon=PolygonSettings(api_key=SecretStr("k")),
        kafka=KafkaSettings(bootstrap_servers=NOWHERE),
    )
    svc = IngestService(settings, IngestSettings(http_port=0), symbols=("AAPL",))
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    errors: list[BaseException] = []

    def main() -> None:
        try:
            loop.run_until_complete(svc.run(stop))
        except BaseException as err:
            errors.append(err)

    t = threading.Thread(target=main, daemon=True)
    t.start()
    try:
        for _ in range(300):
            if svc.health is not None or errors:
                break
            threading.Event().wait(0.1)
        assert not errors and isinstance(svc.health, HealthServer)
        with httpx.Client(base_url=svc.health.url, timeout=10) as c:
            assert c.get("/health/live").json() == {"status": "ok"}
            r = c.get("/health/ready")
            assert r.status_code == 503
            assert r.json() == {"status": "unavailable", "reason": "kafka topics not checked yet"}
            assert "signalstack_ingest_messages_out_total" in c.get("/metrics").text
    finally:
        loop.call_soon_threadsafe(stop.set)
        t.join(60)
        loop.close()
    assert not t.is_alive() and not errors


def test_serving_endpoints_come_from_the_one_module(tmp_path: Path) -> None:
    """The inference API keeps its detailed /health and OIP v2 probes; /health/live,
    /health/ready and /metrics are the one module's, with its JSON bodies and semantics."""
    from fastapi.testclient import TestClient

    from signalstack.serving.app import create_app
    from signalstack.serving.metrics import ServingMetrics
    from signalstack.serving.repository import DirectorySource, ModelRepository

    (tmp_path / "models").mkdir()  # no bundle: the models never load, so never ready
    repo = ModelRepository(DirectorySource(tmp_path / "models"), metrics=ServingMetrics())
    app = create_app(Settings(), repo, None)
    paths = app.openapi()["paths"]
    for path in ("/health/live", "/health/ready", "/metrics"):
        assert paths[path]["get"]["tags"] == ["observability"], path  # the module's routers
    with TestClient(app) as c:
        assert c.get("/health/live").json() == {"status": "ok"}
        r = c.get("/health/ready")
        assert r.status_code == 503
        assert r.json() == {"status": "unavailable", "reason": "models not loaded yet"}
        text = c.get("/metrics")
        assert "signalstack_serving_" in text.text
        om = c.get("/metrics", headers={"accept": "application/openmetrics-text"})
        assert om.headers["content-type"].startswith("application/openmetrics-text")
