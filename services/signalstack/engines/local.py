"""The local stream engine (``signalstack stream --engine local``): the embedded default.

Consumes batches of trades (a DataFrame iterator — the simulator/replay in-process, or Kafka
``market.trades`` through :func:`signalstack.engines.sources.kafka_batches`), runs the shared
:class:`~signalstack.engines.core.FeatureStateMachine` with an event-time watermark, and writes
bars + features to a sink (the store) and features to a publisher (Kafka ``market.features``);
late trades go to the DLQ with reason ``late``. Vectorised across the whole batch and every
symbol at once: no Python loop per trade.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]

from signalstack.engines.base import (
    BarFeatureSink,
    DlqSink,
    EngineStats,
    FeaturePublisher,
    StreamEngine,
)
from signalstack.engines.core import Emitted, FeatureStateMachine, Watermark
from signalstack.engines.metrics import record_batch
from signalstack.features.conditions import EligibilityRules, bundled_rules
from signalstack.features.sessions import SessionIndex, session_index
from signalstack.features.trades import TradeBatch
from signalstack.logs import get_logger

log = get_logger(__name__)

DLQ_SOURCE = "stream"
# Trades a backfill produced to market.trades (`signalstack backfill --sink kafka`): history,
# whose closed minutes the backfill itself replays (docs/components/backfill.md). Older than the
# watermark they are not late live prints: they are counted, not sent to the DLQ.
BACKFILL_SOURCE = "polygon_rest"
_SLICE_ROWS = 2  # late rows up to which one-row slices beat a take


@dataclass(frozen=True, slots=True)
class LateTrade:
    """A DLQ record for a trade older than the watermark (same fields as ``DlqRecord``)."""

    source: str
    reason: str
    payload: str
    detail: str
    key: str | None
    received_at: dt.datetime


def split_backfill(batch: TradeBatch, rows: Any) -> tuple[Any, int]:
    """The late ``rows`` that are not backfill history, and how many were."""
    if len(rows) == 0:
        return rows, 0
    idx = np.asarray(rows, dtype=np.int64)
    if isinstance(batch, (pa.RecordBatch, pa.Table)):
        if "source" not in batch.schema.names:
            return rows, 0
        src = np.asarray(batch.column("source").take(idx).to_pylist(), dtype=object)
    else:
        if "source" not in batch.columns:
            return rows, 0
        src = batch["source"].to_numpy(dtype=object)[idx]
    history = src == BACKFILL_SOURCE
    return idx[~history], int(history.sum())


def late_records(batch: TradeBatch, rows: Any, watermark_ns: int) -> list[Any]:
    """DLQ records for the late rows of a batch (few: a Python loop is fine here)."""
    if len(rows) == 0:
        return []
    try:
        from signalstack.store.base import DlqRecord as Record
    except ImportError:  # pragma: no cover - the store ships with the package
        Record = LateTrade  # type: ignore[assignment,misc]  # noqa: N806
    now = dt.datetime.now(dt.UTC)
    out: list[Any] = []
    wm = pd.Timestamp(watermark_ns, tz="UTC").isoformat()
    if isinstance(batch, (pa.RecordBatch, pa.Table)) and len(rows) <= _SLICE_ROWS:
        # a few rows (the usual case): zero-copy slices, not a gather of every column
        recs = [r for i in np.asarray(rows).tolist() for r in batch.slice(i, 1).to_pylist()]
    elif isinstance(batch, (pa.RecordBatch, pa.Table)):
        # column by column (C loops), then one dict per row, keys in schema order
        cols = batch.take(np.asarray(rows, dtype=np.int64)).to_pydict()
        names = list(cols)
        rows_values = zip(*cols.values(), strict=True)
        recs = [dict(zip(names, values, strict=True)) for values in rows_values]
    else:
        recs = batch.iloc[rows].to_dict("records")
    for rec in recs:
        payload = orjson.dumps(
            rec, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY
        ).decode()
        out.append(
            Record(
                source=DLQ_SOURCE,
                reason="late",
                payload=payload,
                detail=f"ts_event before the watermark {wm}",
                key=str(rec.get("symbol")),
                received_at=now,
            )
        )
    return out


def _json_default(v: Any) -> Any:
    if isinstance(v, (tuple, set)):
        return list(v)
    if v is pd.NA:
        return None
    return str(v)


class LocalEngine(StreamEngine):
    """Micro-batch engine in one process. ``process(batch)`` is one trigger; ``run()`` drains
    a source; ``flush()`` finalizes everything at the end of a bounded replay."""

    name = "local"

    def __init__(
        self,
        sink: BarFeatureSink,
        *,
        dlq: DlqSink | None = None,
        publisher: FeaturePublisher | None = None,
        source: Iterable[TradeBatch] | None = None,
        rules: EligibilityRules | None = None,
        sessions: SessionIndex | None = None,
        lateness: dt.timedelta = dt.timedelta(seconds=5),
        extended_hours: bool = False,
        calendar: str = "XNYS",
    ) -> None:
        self.sink = sink
        self.dlq = dlq if dlq is not None else (sink if isinstance(sink, DlqSink) else None)
        self.publisher = publisher
        self.source = source
        self.machine = FeatureStateMachine(
            rules or bundled_rules(), sessions or session_index(calendar, extended_hours)
        )
        self.watermark = Watermark(int(lateness / dt.timedelta(milliseconds=1)))
        self.stats = EngineStats()

    def process(self, batch: TradeBatch) -> Emitted:
        """One micro-batch (pandas frame or Arrow batch/table): classify against the current
        watermark, then advance it and emit every minute it has passed."""
        wm = self.watermark.ns
        step = self.machine.ingest(batch, wm)
        if step.max_event_ns is not None:
            self.watermark.observe_max(step.max_event_ns)
        emitted = self.machine.finalize(self.watermark.advance())
        late_rows, history = split_backfill(batch, step.late_rows)
        self._write(emitted, batch, late_rows, wm)
        s = self.stats
        s.batches += 1
        s.trades_in += len(batch)
        s.late += len(late_rows)
        s.backfill_history += history
        s.duplicates += step.duplicates
        s.out_of_session += step.out_of_session
        s.unknown_conditions += step.unknown_conditions
        s.bars_out += emitted.n_bars
        s.features_out += emitted.n_features
        record_batch(
            self.name,
            trades=len(batch),
            late=len(late_rows),
            duplicates=step.duplicates,
            unknown_conditions=step.unknown_conditions,
            bars=emitted.n_bars,
            watermark_ns=self.watermark.ns,
        )
        return emitted

    def flush(self) -> Emitted:
        """End of a bounded stream: emit every pending minute (as if the watermark passed all)."""
        emitted = self.machine.finalize(2**62)
        self._write(emitted, pd.DataFrame(), [], self.watermark.ns)
        self.stats.bars_out += emitted.n_bars
        self.stats.features_out += emitted.n_features
        return emitted

    def _write(self, emitted: Emitted, batch: TradeBatch, late_rows: Any, wm: int) -> None:
        if emitted.n_bars:
            self.sink.write_bars(emitted.bars)
        if emitted.n_features:
            self.sink.write_features(emitted.features)
            if self.publisher is not None:
                self.publisher.publish(emitted.features)
        if len(late_rows) and self.dlq is not None:
            self.dlq.write_dlq(late_records(batch, late_rows, wm))

    def batches(self) -> Iterator[Emitted]:
        if self.source is None:
            raise ValueError("LocalEngine has no source: pass source= or call process()")
        for batch in self.source:
            yield self.process(batch)

    def run(self, *, flush_at_end: bool = True) -> EngineStats:
        for _ in self.batches():
            pass
        if flush_at_end:
            self.flush()
        if self.publisher is not None:
            self.publisher.flush()
        log.info("stream finished", engine=self.name, **vars(self.stats))
        return self.stats
