"""Ingest: Polygon WebSocket → validate → Kafka ``market.trades`` (invalid input → DLQ)."""

from signalstack.ingest.service import IngestService, IngestStats, run
from signalstack.ingest.settings import IngestSettings

__all__ = ["IngestService", "IngestSettings", "IngestStats", "run"]
