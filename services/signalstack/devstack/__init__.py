"""The real components on this machine: start Kafka, TimescaleDB, MLflow and Prometheus from the
set-up cache (``make setup``) on free loopback ports, wait until each truly answers, stop cleanly.

Used by the pytest fixtures (tests/conftest.py), the bench/ scripts and developers
(``python -m signalstack.devstack``). Nothing here is a mock: each class runs the real server.
"""

from signalstack.devstack.base import Server, free_port
from signalstack.devstack.kafka import KafkaServer
from signalstack.devstack.mlflow import MlflowServer
from signalstack.devstack.paths import cache_dir
from signalstack.devstack.prometheus import PrometheusServer
from signalstack.devstack.timescale import TimescaleServer

__all__ = [
    "KafkaServer",
    "MlflowServer",
    "PrometheusServer",
    "Server",
    "TimescaleServer",
    "cache_dir",
    "free_port",
]
