"""Run by test_devstack_lifecycle.py in a child pytest session (not collected on its own)."""

from __future__ import annotations

from signalstack.devstack import KafkaServer, MlflowServer, PrometheusServer, TimescaleServer


def test_all_four_servers_up(
    kafka: KafkaServer,
    timescale: TimescaleServer,
    mlflow: MlflowServer,
    prometheus: PrometheusServer,
) -> None:
    for server in (kafka, timescale, mlflow, prometheus):
        assert server.proc is not None and server.proc.poll() is None
        assert server.ready()
