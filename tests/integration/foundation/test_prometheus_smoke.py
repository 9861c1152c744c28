"""Prometheus scrapes a prometheus-client endpoint; PromQL returns the value."""

from __future__ import annotations

import subprocess
import time

import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server

from signalstack.devstack import PrometheusServer
from signalstack.devstack.base import free_port

pytestmark = pytest.mark.integration


def test_scrape_and_query(prometheus: PrometheusServer) -> None:
    registry = CollectorRegistry()
    counter = Counter(
        "signalstack_smoke_events", "events seen by the smoke test", registry=registry
    )
    counter.inc(41)
    counter.inc()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        prometheus.add_target(f"127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        result: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            result = prometheus.query(
                f'signalstack_smoke_events_total{{instance="127.0.0.1:{port}"}}'
            )
            if result:
                break
            time.sleep(0.5)
        assert result, "Prometheus never scraped the endpoint"
        assert float(result[0]["value"][1]) == 42.0  # type: ignore[index]
        up = prometheus.query(f'up{{instance="127.0.0.1:{port}"}}')
        assert float(up[0]["value"][1]) == 1.0  # type: ignore[index]
    finally:
        server.shutdown()
        thread.join(5)


def test_promtool_checks_the_config(prometheus: PrometheusServer) -> None:
    res = subprocess.run(
        [str(prometheus.promtool), "check", "config", str(prometheus.config_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout + res.stderr
