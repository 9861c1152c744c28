"""Ingest: Polygon WebSocket → validate → Kafka ``market.trades`` (invalid input → DLQ)."""

from signalstack.config import IngestSettings
from signalstack.ingest.service import IngestService, IngestStats, run

__all__ = ["IngestService", "IngestSettings", "IngestStats", "run"]
