"""The stream engine seam: one ABC, a local and a Spark implementation side by side, and the
small protocols the engines write through (a :class:`signalstack.store.Store` satisfies both
sink protocols; tests use :class:`ListSink`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pandas as pd


@runtime_checkable
class BarFeatureSink(Protocol):
    """Where bars and features go (idempotent upserts on their keys)."""

    def write_bars(self, df: pd.DataFrame) -> int: ...

    def write_features(self, df: pd.DataFrame) -> int: ...


@runtime_checkable
class DlqSink(Protocol):
    """Where rejected inputs go (``signalstack.store.base.DlqRecord`` or compatible objects)."""

    def write_dlq(self, records: Iterable[Any]) -> int: ...


@runtime_checkable
class FeaturePublisher(Protocol):
    """Where feature rows are published (Kafka ``market.features``)."""

    def publish(self, features: pd.DataFrame) -> int: ...

    def flush(self) -> None: ...


@dataclass
class ListSink:
    """In-memory sink for tests and the embedded demo: keeps every frame written."""

    bars: list[pd.DataFrame] = field(default_factory=list)
    features: list[pd.DataFrame] = field(default_factory=list)
    dlq: list[Any] = field(default_factory=list)

    def write_bars(self, df: pd.DataFrame) -> int:
        self.bars.append(df)
        return len(df)

    def write_features(self, df: pd.DataFrame) -> int:
        self.features.append(df)
        return len(df)

    def write_dlq(self, records: Iterable[Any]) -> int:
        recs = list(records)
        self.dlq.extend(recs)
        return len(recs)

    def all_bars(self) -> pd.DataFrame:
        return _cat(self.bars)

    def all_features(self) -> pd.DataFrame:
        return _cat(self.features)


def _cat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True).sort_values(["symbol", "ts"]).reset_index(drop=True)


@dataclass
class EngineStats:
    """Running totals an engine reports (also exported as Prometheus counters)."""

    trades_in: int = 0
    late: int = 0
    backfill_history: int = 0  # late polygon_rest trades: a backfill replays their minutes
    duplicates: int = 0
    out_of_session: int = 0
    unknown_conditions: int = 0
    bars_out: int = 0
    features_out: int = 0
    batches: int = 0


class StreamEngine(ABC):
    """Trades → deduplicated 1-minute bars → features, by event time with a watermark."""

    name: str = "abstract"

    @abstractmethod
    def run(self) -> EngineStats:
        """Consume until the source ends (or forever, for a live source); return the totals."""
