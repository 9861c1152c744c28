"""Kafka → store sink (``signalstack sink``): at-least-once consumption + idempotent writes."""

from signalstack.config import SinkSettings
from signalstack.sink.service import KafkaSink, run

__all__ = ["KafkaSink", "SinkSettings", "run"]
