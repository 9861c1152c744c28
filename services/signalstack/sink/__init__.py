"""Kafka → store sink (``signalstack sink``): at-least-once consumption + idempotent writes."""

from signalstack.sink.service import KafkaSink, SinkConfig, run

__all__ = ["KafkaSink", "SinkConfig", "run"]
