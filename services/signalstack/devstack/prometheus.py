"""Prometheus (Debian's build, extracted by `make setup`) scraping targets from a file_sd list."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import httpx

from signalstack.devstack.base import Server, free_port
from signalstack.devstack.paths import cache_dir, require

_CONFIG = """\
global:
  scrape_interval: {interval}
  evaluation_interval: {interval}
scrape_configs:
  - job_name: signalstack
    file_sd_configs:
      - files: ["{targets}"]
        refresh_interval: 1s
"""


class PrometheusServer(Server):
    name = "prometheus"
    start_timeout = 30.0

    def __init__(self, workdir: Path | None = None, scrape_interval: str = "1s") -> None:
        super().__init__(workdir)
        bindir = cache_dir() / "prometheus" / "bin"
        self.binary = require(bindir / "prometheus", "Prometheus")
        self.promtool = require(bindir / "promtool", "promtool")
        self.port = free_port()
        self.scrape_interval = scrape_interval
        self.targets: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "prometheus.yml"

    def prepare(self) -> None:
        targets = self.workdir / "targets.json"
        self._write_targets()
        self.config_path.write_text(_CONFIG.format(interval=self.scrape_interval, targets=targets))

    def _write_targets(self) -> None:
        tmp = self.workdir / "targets.json.tmp"
        tmp.write_text(json.dumps([{"targets": self.targets, "labels": {}}]))
        os.replace(tmp, self.workdir / "targets.json")

    def add_target(self, host_port: str) -> None:
        """Scrape ``host_port`` (``/metrics``) from now on; picked up within about a second."""
        self.targets.append(host_port)
        self._write_targets()

    def command(self) -> Sequence[str]:
        return [
            str(self.binary),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]

    def ready(self) -> bool:
        return httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200

    def query(self, promql: str) -> list[dict[str, object]]:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5.0)
        r.raise_for_status()
        body = r.json()
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus query failed: {body}")
        result: list[dict[str, object]] = body["data"]["result"]
        return result
