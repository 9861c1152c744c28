"""Ingest-only knobs (env prefix ``INGEST_``); shared groups stay in :mod:`signalstack.config`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="ignore", frozen=True)

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=9108, ge=0, lt=65536)  # /metrics /health/live /health/ready; 0 = any
    queue_frames: int = Field(default=4096, ge=1)  # bounded socket → parser queue
    max_skew_s: float | None = Field(default=900.0, gt=0)  # live trades further off → DLQ
    dedup_horizon_s: float = Field(default=600.0, gt=0)  # identities remembered (event time)
    gap_lookback_s: float = Field(default=300.0, ge=0)  # gap fill starts this much earlier
    gap_fill: bool = True
    trades_retention_ms: int = 7 * 24 * 3600 * 1000
    dlq_partitions: int = Field(default=1, ge=1)
    dlq_retention_ms: int = 30 * 24 * 3600 * 1000
    linger_ms: int = Field(default=20, ge=0)
    batch_size: int = Field(default=1_000_000, ge=1)
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_cap_s: float = Field(default=30.0, gt=0)
    max_connections_backoff_s: tuple[float, float] = (60.0, 180.0)
    # "all": a delivery report per message (acks and latency per message, ~1.5 µs each);
    # "errors": reports for failures only, acks derived from the producer queue, latency per frame.
    delivery_reports: Literal["all", "errors"] = "all"
    stale_after_s: float = Field(default=30.0, gt=0)  # liveness: processor silent this long
