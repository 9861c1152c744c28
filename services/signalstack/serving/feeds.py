"""Where the live predictions' feature rows come from: one :class:`FeatureFeed` interface, two
implementations side by side.

- :class:`KafkaFeatureFeed` (the cluster): ``market.features`` (the stream job's rows, key =
  symbol, the ``feature_json`` value) in the consumer group ``SERVING_FEED_GROUP_ID``, which
  the replicas share: predicting is partitioned work, each row goes to one replica (a symbol's
  rows stay on one while the group is stable; after a rebalance the new owner's session cache
  fills from the store; every rebalance clears the cache). The handled batch's offsets are
  committed after it was predicted, stored and published, and a batch whose handling failed
  is sought back to and delivered again — at least once; the writes are idempotent, so a
  replay duplicates no table row.
  The WebSocket clients of every replica get every replica's predictions through
  ``market.predictions`` (:mod:`signalstack.serving.fanout`).
- :class:`LocalFeatureFeed` (the embedded default): a *feature log* directory the local engine
  writes through :class:`FeatureLogPublisher` (its ``FeaturePublisher``): each batch of rows is
  one JSON-lines file of the same ``market.features`` values, written under a temporary name and
  renamed into place (readers never see half a file). Why a directory and not the store: the
  embedded store is one DuckDB file, and DuckDB lets one process at a time open a file for
  writing — ``signalstack serve`` holds it (it writes ``predictions`` and ``anomalies``), so the
  engine of another process cannot add rows to it while the API runs, and the API could not
  see them if it did without re-opening the file. A directory of renamed files needs no lock,
  any number of processes can write and read it, and its values are the topic's.

Both hand out :class:`FeatureRow` batches; a value that does not parse is logged and counted
(``signalstack_serving_feed_rejected_total``) and skipped — it never stops the feed.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from signalstack.features.columns import FEATURE_COLUMNS
from signalstack.logs import get_logger
from signalstack.observability.kafka_stats import settled_topic_lag

log = get_logger(__name__)

F8 = npt.NDArray[np.float64]
SUFFIX: Final = ".jsonl"


class BadFeatureMessageError(ValueError):
    """A feed value that is not a ``market.features`` row (the message says why)."""


@dataclass(frozen=True, slots=True)
class FeatureRow:
    """One feature row: a symbol's values (``FEATURE_COLUMNS`` order, NaN = null) at ``ts``."""

    symbol: str
    ts: pd.Timestamp
    feature_set_version: int
    values: F8

    def frame(self) -> pd.DataFrame:
        return rows_frame([self])


def rows_frame(rows: Iterable[FeatureRow]) -> pd.DataFrame:
    """Rows → the store's features frame (symbol, ts, features…, feature_set_version)."""
    rows = list(rows)
    data: dict[str, Any] = {
        "symbol": [r.symbol for r in rows],
        "ts": pd.DatetimeIndex([r.ts for r in rows], tz="UTC"),
    }
    matrix = np.vstack([r.values for r in rows]) if rows else np.empty((0, len(FEATURE_COLUMNS)))
    for i, c in enumerate(FEATURE_COLUMNS):
        data[c] = matrix[:, i]
    data["feature_set_version"] = np.asarray([r.feature_set_version for r in rows], dtype=np.int64)
    return pd.DataFrame(data)


def parse_feature_message(raw: bytes | str) -> FeatureRow:
    """A ``market.features`` value (``signalstack.engines.kafka_io.feature_json``) → a row."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise BadFeatureMessageError(f"not JSON: {err}") from None
    if not isinstance(obj, dict):
        raise BadFeatureMessageError(f"not a JSON object: {type(obj).__name__}")
    if obj.get("schema_version") != 1:
        raise BadFeatureMessageError(f"schema_version {obj.get('schema_version')!r}, expected 1")
    symbol, ts, fsv = obj.get("symbol"), obj.get("ts"), obj.get("feature_set_version")
    if not isinstance(symbol, str) or not symbol:
        raise BadFeatureMessageError(f"symbol {symbol!r} is not a non-empty string")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise BadFeatureMessageError(f"ts {ts!r} is not an integer (ns since the epoch)")
    if isinstance(fsv, bool) or not isinstance(fsv, int) or fsv < 1:
        raise BadFeatureMessageError(f"feature_set_version {fsv!r} is not a positive integer")
    values = np.empty(len(FEATURE_COLUMNS), dtype=np.float64)
    for i, c in enumerate(FEATURE_COLUMNS):
        v = obj.get(c, math.nan)
        if v is None:
            v = math.nan
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise BadFeatureMessageError(f"{c} {v!r} is not a number or null")
        if math.isinf(v):
            raise BadFeatureMessageError(f"{c} is infinite")
        values[i] = v
    return FeatureRow(symbol, pd.Timestamp(ts, tz="UTC"), fsv, values)


OnReject = Callable[[str], None]
OnRebalance = Callable[[], None]
OnLag = Callable[[int], None]


class FeatureFeed(ABC):
    """New feature rows, in arrival order, one batch per :meth:`poll` (blocking; the live
    predictor calls it from its own thread)."""

    #: shown by /health and the logs
    description: str = ""

    def __init__(self) -> None:
        self.on_reject: OnReject | None = None
        #: called (on the polling thread) when the feed's assignment changes: the rows it
        #: delivers from then on are not the continuation of those before
        self.on_rebalance: OnRebalance | None = None
        #: called (on the polling thread) with the consumer's lag when a feed knows it
        self.on_lag: OnLag | None = None

    @abstractmethod
    def poll(self, timeout_s: float) -> list[FeatureRow]:
        """The rows that arrived since the last call (waiting up to ``timeout_s`` for some)."""

    def commit(self) -> None:  # noqa: B027 - optional: only a feed with offsets needs it
        """The last polled batch is handled (predicted, stored, published)."""

    @abstractmethod
    def rewind(self) -> None:
        """The last polled batch was not handled: the next :meth:`poll` delivers it again."""

    @abstractmethod
    def close(self) -> None:
        """Release the feed."""

    def _parse(self, raw: bytes | str, where: str) -> FeatureRow | None:
        try:
            return parse_feature_message(raw)
        except BadFeatureMessageError as err:
            log.warning("serving.feed_bad_message", where=where, error=str(err))
            if self.on_reject is not None:
                self.on_reject(str(err))
            return None


def group_id(template: str) -> str:
    """``SERVING_FEED_GROUP_ID`` with ``{hostname}`` replaced (a group per replica: each
    predicts every row — kept for a single replica's own group; the cluster shares one)."""
    return template.replace("{hostname}", socket.gethostname())


class KafkaFeatureFeed(FeatureFeed):
    """``market.features`` in the consumer group ``group``; a new group starts at the newest
    rows (live predictions, not the topic's history), a known one where it left off.
    :attr:`partitions`: the partitions this member owns now (logged on each rebalance)."""

    def __init__(
        self, bootstrap: str, topic: str, group: str, *, max_batch: int = 1000,
        pin_attempts: int = 6, pin_backoff_s: float = 0.5, stats_interval_ms: int = 5_000,
    ) -> None:  # fmt: skip
        super().__init__()
        from confluent_kafka import Consumer

        self.topic = topic
        self.max_batch = max_batch
        self.pin_attempts = pin_attempts
        self.pin_backoff_s = pin_backoff_s
        self.description = f"kafka {topic} (group {group})"
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "auto.offset.reset": "latest",
                "enable.auto.commit": False,
                # the consumer's own lag, from librdkafka's statistics (as the sink's)
                "statistics.interval.ms": stats_interval_ms,
                "stats_cb": self._on_stats,
            }
        )
        self._partitions: frozenset[int] = frozenset()
        self._consumer.subscribe(
            [topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked
        )
        # per partition: the last polled batch's first offset and next offset, and the next
        # offsets of the handled batches not committed yet
        self._batch_start: dict[int, int] = {}
        self._batch_next: dict[int, int] = {}
        self._done: dict[int, int] = {}
        self._closing = False

    @property
    def partitions(self) -> frozenset[int]:
        return self._partitions

    def _on_stats(self, raw: str) -> None:
        """Rows of the owned partitions neither handled nor committed (a settled assignment;
        the last value is kept while it is unknown)."""
        if self.on_lag is None:
            return
        owned = [(self.topic, p) for p in self._partitions]
        lag = settled_topic_lag(raw, owned, self.topic)
        if lag is not None:
            self.on_lag(lag)

    def _assigned(self, consumer: Any, partitions: list[Any]) -> None:
        self._partitions = frozenset(p.partition for p in partitions)
        self._forget()
        log.info("serving.feed_assigned", topic=self.topic, partitions=sorted(self._partitions))
        if self._closing:  # an assignment served while the consumer leaves: nothing to read
            return
        wait = self.pin_backoff_s
        for attempt in range(1, self.pin_attempts + 1):
            try:
                self._pin_start(consumer, partitions)
                return
            except Exception as err:  # e.g. REBALANCE_IN_PROGRESS, the coordinator away
                log.warning("serving.feed_start_not_pinned", topic=self.topic, error=str(err),
                            attempt=attempt, retry_in_s=wait)  # fmt: skip
                if attempt == self.pin_attempts:
                    # loudly: a partition nobody committed would start at its newest row
                    # and skip what arrived since the group's previous member started it
                    log.error("serving.feed_start_unknown", topic=self.topic, error=str(err))
                    raise RuntimeError(
                        f"{self.topic}: the committed offsets of partitions "
                        f"{sorted(self._partitions)} are unknown after {attempt} attempts: {err}"
                    ) from err
                time.sleep(wait)
                wait *= 2

    def _pin_start(self, consumer: Any, partitions: list[Any]) -> None:
        """A partition the group never committed starts at its newest row (not the topic's
        history) — and that start is committed at once, so a member taking the partition over
        in a rebalance resumes there instead of at *its* newest row, skipping what arrived
        between the two assignments."""
        from confluent_kafka import TopicPartition

        committed = consumer.committed(partitions, timeout=10)
        fresh = {tp.partition for tp in committed if tp.offset < 0}  # no commit: OFFSET_INVALID
        if not fresh:
            return
        starts = []
        for tp in partitions:
            if tp.partition in fresh:
                _low, high = consumer.get_watermark_offsets(tp, timeout=10)
                tp = TopicPartition(tp.topic, tp.partition, high)
                starts.append(tp)
        consumer.commit(offsets=starts, asynchronous=False)
        by_partition = {tp.partition: tp.offset for tp in starts}
        consumer.assign(
            [
                TopicPartition(tp.topic, tp.partition, by_partition.get(tp.partition, tp.offset))
                for tp in partitions
            ]
        )
        log.info("serving.feed_start_pinned", topic=self.topic, offsets=by_partition)

    def _revoked(self, _consumer: Any, partitions: list[Any]) -> None:
        # called inside poll, between batches: every batch handled so far is committed (or,
        # if that commit failed, its rows come again to the partition's next owner)
        self._partitions = frozenset()
        self._done.clear()
        self._forget()
        log.info("serving.feed_revoked", topic=self.topic,
                 partitions=sorted(p.partition for p in partitions))  # fmt: skip

    def _forget(self) -> None:
        """The assignment changed: the batch in hand is not this member's to commit or rewind,
        and the cache's rows are no longer the continuation of what comes next."""
        self._batch_start.clear()
        self._batch_next.clear()
        if self.on_rebalance is not None:
            self.on_rebalance()

    def poll(self, timeout_s: float) -> list[FeatureRow]:
        self._batch_start.clear()
        self._batch_next.clear()
        msgs = self._consumer.consume(num_messages=self.max_batch, timeout=timeout_s)
        rows: list[FeatureRow] = []
        for m in msgs:
            if m.error():
                log.warning("serving.feed_kafka_error", error=str(m.error()))
                continue
            p, offset = m.partition(), m.offset()
            if p is not None and offset is not None:
                self._batch_start.setdefault(p, offset)
                self._batch_next[p] = offset + 1
            row = self._parse(m.value() or b"", f"{m.topic()}:{m.partition()}:{m.offset()}")
            if row is not None:
                rows.append(row)
        return rows

    def commit(self) -> None:
        """Commit the handled batches' offsets (explicitly: never the consumer's position,
        which may be past a batch that failed)."""
        from confluent_kafka import TopicPartition

        self._done.update(self._batch_next)
        self._batch_start.clear()
        self._batch_next.clear()
        if not self._done:
            return
        offsets = [TopicPartition(self.topic, p, o) for p, o in sorted(self._done.items())]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
            self._done.clear()
        except Exception as err:  # a rebalance or a broker away: the rows come again (idempotent)
            log.warning("serving.feed_commit_failed", error=str(err))

    def rewind(self) -> None:
        """Seek each partition of the last batch back to the batch's first offset."""
        from confluent_kafka import TopicPartition

        starts = sorted(self._batch_start.items())
        self._batch_start.clear()
        self._batch_next.clear()
        for p, offset in starts:
            self._consumer.seek(TopicPartition(self.topic, p, offset))
        if starts:
            log.info("serving.feed_rewound", topic=self.topic, offsets=dict(starts))

    def close(self) -> None:
        self._closing = True
        self._consumer.close()


class LocalFeatureFeed(FeatureFeed):
    """The feature log directory: each poll reads the files that appeared since the last one,
    in name order (names start with the writer's clock in ns). Files already there at start-up
    are not read: like a new Kafka group, the feed starts at the newest rows."""

    def __init__(self, directory: Path, *, interval_s: float = 0.02) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.interval_s = interval_s
        self.description = f"local feature log {self.directory}"
        self._seen = set(self._names())
        self._last: list[str] = []
        self._closed = threading.Event()

    def _names(self) -> list[str]:
        try:
            return sorted(
                e.name
                for e in os.scandir(self.directory)
                if e.name.endswith(SUFFIX) and not e.name.startswith(".")
            )
        except FileNotFoundError:
            return []

    def poll(self, timeout_s: float) -> list[FeatureRow]:
        deadline = time.monotonic() + timeout_s
        while True:
            names = self._names()
            new = [n for n in names if n not in self._seen]
            if new or self._closed.is_set() or time.monotonic() >= deadline:
                break
            self._closed.wait(self.interval_s)
        self._seen = set(names)  # forget files the writer removed
        self._last = new
        rows: list[FeatureRow] = []
        for name in new:
            try:
                text = (self.directory / name).read_bytes()
            except FileNotFoundError:  # pruned between the listing and the read
                continue
            for i, line in enumerate(text.splitlines()):
                if line.strip():
                    row = self._parse(line, f"{name}:{i + 1}")
                    if row is not None:
                        rows.append(row)
        return rows

    def rewind(self) -> None:
        self._seen.difference_update(self._last)
        self._last = []

    def close(self) -> None:
        self._closed.set()


class FeatureLogPublisher:
    """The local engine's side of :class:`LocalFeatureFeed` (a ``FeaturePublisher``:
    ``LocalEngine(store, publisher=FeatureLogPublisher(dir))``): each published batch becomes
    one file of ``market.features`` values; files older than ``retention_s`` are removed."""

    def __init__(self, directory: Path, *, retention_s: float = 3600.0) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.retention_s = retention_s
        self._seq = 0

    def publish(self, features: pd.DataFrame) -> int:
        from signalstack.engines.kafka_io import feature_json

        if features.empty:
            return 0
        body = b"\n".join(feature_json(r) for r in features.to_dict("records")) + b"\n"
        self._seq += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}{SUFFIX}"
        tmp = self.directory / f".{name}.{uuid.uuid4().hex[:6]}.tmp"
        tmp.write_bytes(body)
        os.replace(tmp, self.directory / name)  # atomic: a reader sees all of it or nothing
        self._prune()
        return len(features)

    def _prune(self) -> None:
        cutoff = time.time() - self.retention_s
        for e in os.scandir(self.directory):
            try:
                if e.name.endswith(SUFFIX) and e.stat().st_mtime < cutoff:
                    os.unlink(e.path)
            except FileNotFoundError:
                continue

    def flush(self) -> None:
        return None


__all__ = [
    "BadFeatureMessageError",
    "FeatureFeed",
    "FeatureLogPublisher",
    "FeatureRow",
    "KafkaFeatureFeed",
    "LocalFeatureFeed",
    "group_id",
    "parse_feature_message",
    "rows_frame",
]
