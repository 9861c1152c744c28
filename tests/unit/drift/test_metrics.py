"""The drift pass's "last success" gauge under the Pushgateway's replace semantics: a failed
pass moves ``last_run`` and the error count but never erases the last success's time."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from signalstack.config import DriftSettings, Settings, StoreSettings
from signalstack.drift import job
from signalstack.drift.job import DriftReport, ModelDrift
from signalstack.drift.metrics import JOB, DriftMetrics
from signalstack.store.base import StoreError

T = pd.Timestamp("2026-03-02 20:00", tz="UTC")
LAST_RUN = "signalstack_drift_last_run_timestamp_seconds"
LAST_SUCCESS = "signalstack_drift_last_success_timestamp_seconds"


class _Gateway(http.server.BaseHTTPRequestHandler):
    """The Pushgateway's grouping semantics for one group: PUT replaces every metric family of
    the group, POST replaces only the families it carries (what prometheus_client's
    push_to_gateway / pushadd_to_gateway rely on)."""

    families: ClassVar[dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]] = {}
    methods: ClassVar[list[str]] = []

    def _push(self, replace: bool) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        assert self.path == f"/metrics/job/{JOB}"
        pushed = {
            fam.name: {(s.name, tuple(sorted(s.labels.items()))): s.value for s in fam.samples}
            for fam in text_string_to_metric_families(body)
        }
        if replace:
            type(self).families = pushed
        else:
            type(self).families = {**self.families, **pushed}
        self.methods.append(self.command)
        self.send_response(200)
        self.end_headers()

    def do_PUT(self) -> None:
        self._push(replace=True)

    def do_POST(self) -> None:
        self._push(replace=False)

    def log_message(self, format: str, *args: object) -> None:
        pass

    @classmethod
    def value(cls, name: str, **labels: str) -> float | None:
        for samples in cls.families.values():
            v = samples.get((name, tuple(sorted(labels.items()))))
            if v is not None:
                return v
        return None


@pytest.fixture
def gateway() -> Iterator[type[_Gateway]]:
    _Gateway.families, _Gateway.methods = {}, []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    _Gateway.url = f"http://127.0.0.1:{srv.server_address[1]}"  # type: ignore[attr-defined]
    yield _Gateway
    srv.shutdown()
    srv.server_close()


def _report() -> DriftReport:
    m = ModelDrift("regime", "3", "regime v3", 1, 500, {"a": 0.05}, "stable")
    return DriftReport(T, T, 0.1, 0.25, (m,))


def test_a_failed_pass_keeps_the_last_success_at_the_gateway(gateway: type[_Gateway]) -> None:
    url = gateway.url  # type: ignore[attr-defined]
    ok = DriftMetrics()  # each pass is its own process: its own registry
    ok.observe(_report(), now=100.0)
    ok.succeeded(now=100.0)
    assert ok.push(url)
    assert (gateway.value(LAST_RUN), gateway.value(LAST_SUCCESS)) == (100.0, 100.0)

    bad = DriftMetrics()
    bad.failed(now=200.0)
    assert LAST_SUCCESS not in bad.exposition()  # a failed pass has no success time to give
    assert bad.push(url)
    assert gateway.methods == ["PUT", "POST"]
    assert gateway.value(LAST_RUN) == 200.0
    assert gateway.value(LAST_SUCCESS) == 100.0  # kept: the alert on its age keeps counting
    assert gateway.value("signalstack_drift_runs_total", outcome="error") == 1

    again = DriftMetrics()
    again.observe(_report(), now=300.0)
    again.succeeded(now=300.0)
    assert again.push(url)
    assert (gateway.value(LAST_RUN), gateway.value(LAST_SUCCESS)) == (300.0, 300.0)
    assert gateway.value("signalstack_drift_runs_total", outcome="error") is None  # replaced


def test_the_command_marks_success_only_when_the_pass_completes(
    gateway: type[_Gateway], tmp_path: Path
) -> None:
    url = gateway.url  # type: ignore[attr-defined]
    store = StoreSettings(type="duckdb", duckdb_path=str(tmp_path / "s.duckdb"))
    empty = tmp_path / "models"
    empty.mkdir()  # no bundle: nothing to judge, a pass that completes
    drift = DriftSettings(model_dir=empty, pushgateway_url=url, retrain="off", api_attempts=1)
    ok = DriftMetrics()
    job.run(Settings(store=store, drift=drift), now=T, metrics=ok)
    assert ok.registry.get_sample_value(LAST_SUCCESS) is not None
    assert gateway.value(LAST_SUCCESS) is not None
    first = gateway.value(LAST_SUCCESS)

    a_dir = StoreSettings(type="duckdb", duckdb_path=str(tmp_path))  # no database file there
    failed = DriftMetrics()
    with pytest.raises(StoreError):
        job.run(Settings(store=a_dir, drift=drift), now=T, metrics=failed)
    assert failed.registry.get_sample_value(LAST_SUCCESS) is None
    assert gateway.methods == ["PUT", "POST"]
    assert gateway.value(LAST_SUCCESS) == first
    assert gateway.value("signalstack_drift_runs_total", outcome="error") == 1
