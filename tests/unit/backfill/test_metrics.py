"""The last run's metrics: a node-exporter textfile and a Pushgateway push (best effort)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from signalstack.backfill.metrics import JOB, export, registry_for
from signalstack.backfill.run import BackfillResult, BackfillStats


def result(status: str = "ok") -> BackfillResult:
    stats = BackfillStats(ranges=3, minutes=45, minutes_healed=45, api_calls=12, retries=4,
                          http_429=3, http_5xx=1, trades_stored=900)  # fmt: skip
    return BackfillResult("r1", status, stats, duration_s=2.5)


def values(text: str) -> dict[str, float]:
    return {s.name: s.value for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_the_runs_figures() -> None:
    v = values(generate_latest(registry_for(result(), now=1_700_000_000.0)).decode())
    assert v["signalstack_backfill_last_http_429"] == 3
    assert v["signalstack_backfill_last_retries"] == 4
    assert v["signalstack_backfill_last_healed_seconds"] == 45 * 60
    assert v["signalstack_backfill_last_gap_ranges"] == 3
    assert v["signalstack_backfill_last_duration_seconds"] == 2.5
    assert v["signalstack_backfill_last_healed"] == 1
    assert v["signalstack_backfill_last_run_timestamp_seconds"] == 1_700_000_000.0
    failed = values(generate_latest(registry_for(result("failed"))).decode())
    assert failed["signalstack_backfill_last_healed"] == 0


def test_textfile(tmp_path: Path) -> None:
    path = tmp_path / "backfill.prom"
    export(result(), textfile=str(path))
    assert values(path.read_text())["signalstack_backfill_last_trades_stored"] == 900


class _Recorder(http.server.BaseHTTPRequestHandler):
    got: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.got.append(("PUT", self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    _Recorder.got = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", _Recorder.got
    srv.shutdown()
    srv.server_close()


def test_pushgateway_push(recorder: tuple[str, list[tuple[str, str, bytes]]]) -> None:
    url, got = recorder
    export(result(), pushgateway=url)
    assert [(m, p) for m, p, _ in got] == [("PUT", f"/metrics/job/{JOB}")]
    assert b"signalstack_backfill_last_api_calls 12.0" in got[0][2]


def test_a_pushgateway_that_is_down_is_logged_not_raised(tmp_path: Path) -> None:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    port = srv.server_address[1]
    srv.server_close()  # nothing listens there now
    path = tmp_path / "m.prom"
    export(result(), pushgateway=f"http://127.0.0.1:{port}", textfile=str(path))
    assert path.exists()
