"""The sink: Kafka ``market.trades`` / ``market.features`` / ``market.predictions`` → the store.

Delivery: auto-commit is off; a batch's offsets (explicit, per partition) are committed only
after its rows are durable: with synchronous commits when the store call returns, by default
(``SINK_SYNCHRONOUS_COMMIT=false``) once the store's WAL flush position has passed the write
(see ``_commit``). A crash between the write and the commit replays the batch on restart; a
database crash that loses acknowledged rows makes the sink rewind to its committed offsets; the
idempotent writes absorb both replays, so each row lands exactly once.

Pipeline (bounded): the store writes batch N while the consumer thread polls and decodes batch
N+1; N+1 is handed over only once N's write has returned, and N's offsets are then committed
asynchronously, at most every ``SINK_COMMIT_INTERVAL_S`` (a later commit supersedes a failed
one; shutdown and partition revocation wait for the write in flight and commit synchronously).
So at most two batches are in memory, and commits stay in batch order. A commit that fails is
not a lost write (the rows are durable, and a replay from the last committed offset is absorbed
by the idempotent writes): it is logged and counted, and the sink carries on.

Clocks: every periodic action runs on an injected clock (``time.monotonic`` by default) and is
due at once when the sink starts (:class:`~signalstack.sink.periodic.Every`): the first durable
batch is committed as soon as it is durable, then at most once per interval; the retention
fallback runs at start-up. Nothing waits for the machine's uptime to pass an interval.

Readiness (``/health/ready``): partitions assigned, the group coordinator reachable (librdkafka's
statistics and its all-brokers-down error), the store not retrying a write, and the consume
loop turning. Cleared on revocation, on loss of the partitions and while the broker is gone;
liveness (``/health/live``) answers from its own thread throughout.

Rejects: messages that do not decode or validate, and rows the database refuses for a
constraint (found by bisecting the failed batch), go to the ``dlq`` table with the reason, and
their offsets are committed with the rest: nothing is dropped silently. A write that keeps
failing for connection reasons past the retry budget stops the sink without committing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np
import orjson
import pandas as pd
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from signalstack.config import Settings, SinkSettings
from signalstack.logs import get_logger
from signalstack.observability import HealthServer
from signalstack.observability.kafka_stats import consumer_lag, group_steady, group_up
from signalstack.process import tune_gc
from signalstack.sink import metrics
from signalstack.sink.decode import Raw, decode_rows, decode_trades
from signalstack.sink.periodic import Clock, Every
from signalstack.store.base import FEATURE_COLUMNS, DlqRecord, Store, open_store
from signalstack.store.batch import TradeBatch, check_batch

log = get_logger(__name__)
Rows = TradeBatch | pd.DataFrame

PREDICTION_REQUIRED = ("symbol", "ts", "model_name", "model_version", "value")
_DURABLE_CHECK_S = 0.05  # how often the running loop asks the store for its flush position
_STALL_S = 15.0  # not ready when the consume loop has not turned for this long (a hung write)


def _rows(data: Rows, start: int, stop: int) -> Rows:
    return data.take(slice(start, stop)) if isinstance(data, TradeBatch) else data.iloc[start:stop]


class _Origins(Sequence[str]):
    """The Kafka coordinates of a poll's messages of one topic, formatted only when a message
    is rejected (the common batch has none): ``kafka:<topic>:<partition>:<offset>@<ms>``, with
    the message's timestamp, so a recreated topic (offsets from 0 again) is not taken for a
    replay of the old one."""

    __slots__ = ("_topic", "_where")

    def __init__(self, topic: str, where: list[tuple[int, int, int]]) -> None:
        self._topic, self._where = topic, where

    def __len__(self) -> int:
        return len(self._where)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[str]: ...
    def __getitem__(self, i: int | slice) -> str | Sequence[str]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        partition, offset, ts_ms = self._where[i]
        return f"kafka:{self._topic}:{partition}:{offset}@{ts_ms}"


@dataclass(slots=True)
class Batch:
    """One poll, decoded: what to write, what goes to the DLQ, the offsets to commit after."""

    offsets: list[Any]
    writes: list[tuple[str, Rows, Callable[[Any], int], str]] = field(default_factory=list)
    dlq: list[DlqRecord] = field(default_factory=list)
    prepared_at: float = 0.0  # perf_counter when decoded
    direct: bool = False  # submitted straight to the store's event loop
    submitted_at: float = 0.0


class KafkaSink:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        config: SinkSettings | None = None,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        """``clock``: the periodic actions' clock (seconds; injected by tests)."""
        from confluent_kafka import Consumer

        self.settings = settings
        self.store = store
        self.config = config or settings.sink
        k = settings.kafka
        self.topics = self.config.topics or (k.trades_topic, k.features_topic, k.predictions_topic)
        self.consumer = Consumer(
            {
                "bootstrap.servers": k.bootstrap_servers,
                "group.id": self.config.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,  # offsets are committed explicitly
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": self.config.fetch_wait_max_ms,
                "fetch.min.bytes": self.config.fetch_min_bytes,
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": self.config.session_timeout_ms,
                "heartbeat.interval.ms": max(500, self.config.session_timeout_ms // 5),
                "statistics.interval.ms": self.config.stats_interval_ms,
                "stats_cb": self._on_stats,
                "error_cb": self._on_error,
                "on_commit": self._on_commit,
            }
        )
        if hasattr(store, "on_retry"):
            store.on_retry = self._on_store_retry
        self.clock = clock
        self._stop = threading.Event()
        self.http: HealthServer | None = None  # /metrics, /health/*: while running
        # Read by the HTTP thread: each replaced whole, never mutated in place.
        self._assigned: frozenset[tuple[str, int]] = frozenset()
        self._group_up = False  # the group coordinator reachable (stats, error_cb)
        self._store_ok = True  # False from a write retry until a write succeeds
        self._turned_at = clock()  # the consume loop's last turn
        self._retention = Every(self.config.retention_interval_s, clock)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sink-writer")
        self._inflight: tuple[Future[Any], Batch] | None = None
        self._pending_offsets: dict[tuple[str, int], int] = {}  # written, not yet marked
        # (store write position, offsets): written, waiting for the store's flush to pass it
        self._awaiting: list[tuple[int | None, dict[tuple[str, int], int]]] = []
        self._generation = store.generation
        self._rewinds = 0
        self._fatal: BaseException | None = None  # a write failed where it could not be raised
        self._marks = Every(self.config.commit_interval_s, clock)  # offsets noted for commit
        self._durable_checks = Every(_DURABLE_CHECK_S, clock)

    # ---- health --------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.not_ready() is None

    def readiness(self) -> tuple[bool, str]:
        """The readiness check served at ``/health/ready`` (``(ok, why)``)."""
        why = self.not_ready()
        return (True, "ok") if why is None else (False, why)

    def not_ready(self) -> str | None:
        """Why the sink is not ready, or ``None`` when it is (read from the HTTP thread)."""
        if not self._assigned:
            return "no partitions assigned"
        if not self._group_up:
            return "kafka group coordinator unreachable"
        if not self._store_ok:
            return "store write retrying"
        if self.clock() - self._turned_at > _STALL_S:
            return "consume loop stalled"
        return None

    # ---- lifecycle -----------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def _start_http(self) -> None:
        if self.config.http_port is None:
            return
        self.http = HealthServer(
            self.config.http_host,
            self.config.http_port,
            None,  # the sink's metrics are on the default registry
            ready=(self.readiness,),
            name="sink-http",
        ).start()

    def run(
        self, stop: threading.Event | None = None, until: Callable[[], bool] | None = None
    ) -> None:
        """Consume until ``stop`` is set (or ``until()`` is true); then close the consumer."""
        stop = stop or self._stop
        self._start_http()
        self.consumer.subscribe(
            list(self.topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info("sink_started", topics=list(self.topics), store=self.store.kind)
        try:
            while not stop.is_set() and not self._stop.is_set():
                self._turned_at = self.clock()
                if until is not None and until():
                    break
                msgs = self.consumer.consume(
                    num_messages=self.config.max_batch, timeout=self.config.poll_timeout_s
                )
                if self._fatal is not None:  # raised in a rebalance callback
                    raise self._fatal
                work = self.prepare(msgs) if msgs else None
                rewinds = self._rewinds
                if self._inflight is not None and (work is not None or self._inflight[0].done()):
                    self._finish(asynchronous=True)
                if work is not None and rewinds == self._rewinds:  # else replayed after the seek
                    self._inflight = (self._submit(work), work)
                self._housekeeping()
            if self._fatal is not None:
                raise self._fatal
            self._finish(asynchronous=False)
        finally:
            self._assigned = frozenset()
            self._pool.shutdown(wait=True)
            self.consumer.close()
            if self.http is not None:
                self.http.stop()
            log.info("sink_stopped")

    def _submit(self, work: Batch) -> Future[Any]:
        """Start writing a batch. A batch of trades only (the hot path) goes straight to the
        store's own event loop when it offers ``submit_trade_batch`` (one thread hand-off
        fewer per batch); anything else runs :meth:`execute` on the writer thread."""
        submit = getattr(self.store, "submit_trade_batch", None)
        if (
            submit is not None
            and not work.dlq
            and len(work.writes) == 1
            and work.writes[0][0] == "trades"
        ):
            metrics.QUEUE_SECONDS.observe(time.perf_counter() - work.prepared_at)
            work.direct = True
            work.submitted_at = time.perf_counter()
            fut: Future[Any] = submit(work.writes[0][1])
            return fut
        return self._pool.submit(self.execute, work)

    def _finish(self, *, asynchronous: bool, commit: bool = True) -> None:
        """Wait for the write in flight (re-raising its error: nothing is committed then), then
        commit its offsets (with any noted earlier: a synchronous finish commits them all).
        ``commit=False``: only note them (the partitions were lost: no commit can pass)."""
        if self._inflight is None:
            if not asynchronous and commit:
                self._commit([], asynchronous=False)
            return
        fut, work = self._inflight
        self._inflight = None
        if not work.direct:
            fut.result()
        else:
            try:
                n = int(fut.result())
            except Exception as e:
                if not self.store.is_row_error(e):
                    raise  # the database, not the rows: stop without committing
                # The store refused rows of the batch: the writer path bisects it and sends
                # the offending rows to the DLQ; its constraint rejects are there already.
                table, batch, write, topic = work.writes[0]
                assert isinstance(batch, TradeBatch)  # the direct path takes trades only
                work.writes[0] = (table, check_batch(batch)[0], write, topic)
                self.execute(work)
            else:
                metrics.WRITE_LATENCY.labels("trades").observe(
                    time.perf_counter() - work.submitted_at
                )
                metrics.ROWS_WRITTEN.labels("trades").inc(n)
        self._store_ok = True
        if commit:
            self._commit(work.offsets, asynchronous=asynchronous)
        else:
            self._note(work.offsets)

    def _note(self, offsets: list[Any]) -> None:
        for tp in offsets:
            self._pending_offsets[(tp.topic, tp.partition)] = tp.offset

    def _commit(self, offsets: list[Any], *, asynchronous: bool) -> None:
        """Note a written batch's offsets; commit them once they are durable.

        Asynchronously (the running loop) at most every ``commit_interval_s`` of the injected
        clock, the first at once: a commit is a broker request, and one per batch cost the
        broker more CPU than the trades. A crash replays at most that interval, which the
        idempotent writes absorb. Synchronously (shutdown, revocation) everything noted, after
        waiting for it to be durable. A commit that fails is logged and counted, never raised.

        With a store that commits asynchronously (``SINK_SYNCHRONOUS_COMMIT=false``) a write
        returns before its WAL is flushed: each interval's offsets wait, tagged with the
        store's write position, until the store's durable position passes it. If the store
        says acknowledged writes may have been lost (its ``generation`` moved: the server
        restarted or a connection died), the sink rewinds to the committed offsets instead."""
        if self._fatal is not None:  # a batch was lost in flight: commit nothing more
            return
        self._note(offsets)
        if self.store.generation != self._generation:
            self._rewind()
            return
        now = self.clock()
        if self._pending_offsets and (not asynchronous or self._marks.due(now)):
            self._awaiting.append((self.store.write_position(), dict(self._pending_offsets)))
            self._pending_offsets.clear()
            self._marks.done(now)
        if not self._awaiting:
            return
        newest = self._awaiting[-1][0]
        if not asynchronous:
            if not self.store.wait_durable(newest, self.config.durable_wait_s):
                log.warning("offsets_not_committed", reason="store flush timed out")
                return
            durable = newest
        elif newest is None:
            durable = None
        elif not self._durable_checks.due(now):
            return
        else:
            self._durable_checks.done(now)
            durable = self.store.durable_position()
        if self.store.generation != self._generation:  # the position queries reconnected
            self._rewind()
            return
        ready: dict[tuple[str, int], int] = {}
        while self._awaiting and (
            self._awaiting[0][0] is None
            or (durable is not None and self._awaiting[0][0] <= durable)
        ):
            ready.update(self._awaiting.pop(0)[1])
        if not ready:
            return
        commit = [TopicPartition(t, p, o) for (t, p), o in ready.items()]
        try:
            if asynchronous:
                self.consumer.commit(offsets=commit, asynchronous=True)
            else:
                refused = [
                    tp
                    for tp in self.consumer.commit(offsets=commit, asynchronous=False)
                    if tp.error is not None
                ]
                if refused:  # per partition (the request as a whole succeeded)
                    self._commit_failed(refused[0].error, synchronous=True)
                    self._retry_later(ready)
                    return
        except KafkaException as e:
            # Not a lost write: the rows are durable, and whoever consumes these partitions
            # next replays from the last committed offset into idempotent writes. A later
            # commit of the same partitions supersedes this one.
            self._commit_failed(e.args[0] if e.args else e, synchronous=not asynchronous)
            if not asynchronous:
                self._retry_later(ready)
            return
        metrics.COMMITS.inc()

    def _retry_later(self, offsets: dict[tuple[str, int], int]) -> None:
        """Note again the offsets of a failed synchronous commit (nothing newer was committed
        since) for the partitions still owned, so that an idle partition is committed at the
        next interval, not only when new messages arrive. Revoked ones are dropped after."""
        for key, offset in offsets.items():
            if key in self._assigned:
                self._pending_offsets.setdefault(key, offset)

    def _commit_failed(self, err: Any, *, synchronous: bool) -> None:
        metrics.COMMIT_FAILURES.inc()
        log.warning("offset_commit_failed", error=str(err), synchronous=synchronous)

    def _rewind(self) -> None:
        """Writes acknowledged since the last durable offsets may be gone: forget every offset
        not yet committed, drop the batch in flight, and seek each partition back to its
        committed offset; the replay is absorbed by the idempotent writes."""
        log.warning("sink_rewind", reason="store connection lost or server restarted")
        metrics.REWINDS.inc()
        self._rewinds += 1
        if self._inflight is not None:
            fut, _ = self._inflight
            self._inflight = None
            with contextlib.suppress(Exception):
                fut.result()
        self._pending_offsets.clear()
        self._awaiting.clear()
        self._generation = self.store.generation
        parts = self.consumer.assignment()
        if parts:
            for tp in self.consumer.committed(parts, timeout=30):
                start = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                self.consumer.seek(TopicPartition(tp.topic, tp.partition, start))

    # ---- consumer callbacks (served inside consume(), on the consumer thread) -----------------
    def _on_assign(self, consumer: Any, partitions: Any) -> None:
        self._assigned = self._assigned | {(tp.topic, tp.partition) for tp in partitions}
        self._group_up = True  # the coordinator has just answered
        log.info("partitions_assigned", added=len(partitions), owned=len(self._assigned))

    def _on_revoke(self, consumer: Any, partitions: Any) -> None:
        # Finish the batch in flight so its offsets are committed while we still own the
        # partitions (otherwise its rows are replayed by the next owner, which the idempotent
        # writes absorb anyway). A commit that fails here is logged and counted (_commit).
        self._finished_or_stop(asynchronous=False, commit=True)
        self._drop(partitions)
        log.info("partitions_revoked", removed=len(partitions), owned=len(self._assigned))

    def _on_lost(self, consumer: Any, partitions: Any) -> None:
        # The group went on without us (no heartbeat within the session timeout, e.g. the
        # broker was down): another member may own them now, and librdkafka refuses commits.
        # Not ready until reassigned; the write in flight must still land (or stop the sink),
        # and no offset of these partitions is committed: the new owner replays from the last
        # committed one.
        self._assigned = self._assigned - {(tp.topic, tp.partition) for tp in partitions}
        log.warning("partitions_lost", lost=len(partitions), owned=len(self._assigned))
        self._finished_or_stop(asynchronous=True, commit=False)
        self._drop(partitions)

    def _finished_or_stop(self, *, asynchronous: bool, commit: bool) -> None:
        try:
            self._finish(asynchronous=asynchronous, commit=commit)
        except Exception as e:
            # The batch in flight was not written. With cooperative rebalancing this consumer
            # keeps some of its partitions, positioned after that batch: carrying on would
            # commit later offsets past rows that were never written. Stop, as a failed write
            # outside a rebalance does; the restart replays from the committed offsets.
            log.error("rebalance_write_failed", error=repr(e))
            self._fatal = e
            self._stop.set()
            raise

    def _drop(self, partitions: Any) -> None:
        """Forget partitions we no longer own, and every offset of theirs not committed (not
        yet durable, or lost with them): the next owner replays from the committed one."""
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._assigned = self._assigned - gone
        for key in gone:
            self._pending_offsets.pop(key, None)
            for _, offsets in self._awaiting:
                offsets.pop(key, None)

    def _on_commit(self, err: Any, partitions: Any) -> None:
        if err is not None:
            self._commit_failed(err, synchronous=False)

    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN or err.fatal():
            if self._group_up:
                log.warning("kafka_unreachable", error=err.str())
            self._group_up = False
        else:  # a broker connection failing now and then is normal; librdkafka reconnects
            log.debug("kafka_error", error=err.str())

    def _on_stats(self, raw: str) -> None:
        try:
            stats = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            log.debug("kafka_stats_unreadable", error=str(e))
            return
        up = group_up(stats)
        if up != self._group_up:
            log.info("kafka_reachable" if up else "kafka_unreachable", source="stats")
        self._group_up = up
        if group_steady(stats):  # the lag of a settled assignment; frozen while unknown
            for topic, lag in consumer_lag(stats, self._assigned, self.topics).items():
                metrics.CONSUMER_LAG.labels(topic).set(lag)

    def _on_store_retry(self) -> None:  # the store's thread
        metrics.WRITE_RETRIES.inc()
        self._store_ok = False

    # ---- one batch -----------------------------------------------------------------------------
    def handle(self, msgs: list[Any]) -> None:
        """Decode, write and commit one poll's messages synchronously (no pipelining)."""
        work = self.prepare(msgs)
        self.execute(work)
        self._commit(work.offsets, asynchronous=False)

    def prepare(self, msgs: list[Any]) -> Batch:
        """Decode a poll's messages by topic (consumer thread); note the offsets to commit."""
        t0 = time.perf_counter()
        created_type, created_ms = msgs[0].timestamp() if msgs else (0, 0)
        if created_type != 0:  # TIMESTAMP_NOT_AVAILABLE == 0
            metrics.RECORD_AGE.observe(max(0.0, time.time() - created_ms / 1000))
        by_topic: dict[str, list[Raw]] = defaultdict(list)
        where: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
        last: dict[tuple[str, int], int] = {}
        for m in msgs:
            if m.error() is not None:
                log.warning("kafka_error", error=str(m.error()))
                continue
            topic, partition, offset = m.topic(), m.partition(), m.offset()
            by_topic[topic].append((m.key(), m.value()))
            where[topic].append((partition, offset, m.timestamp()[1]))
            last[(topic, partition)] = offset
        metrics.BATCH_MESSAGES.observe(len(msgs))
        k = self.settings.kafka
        work = Batch(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()])
        for topic, raw in by_topic.items():
            metrics.MESSAGES.labels(topic).inc(len(raw))
            origins = _Origins(topic, where[topic])
            if topic == k.trades_topic:
                trades, bad = decode_trades(topic, raw, origins)
                trades = self.store.prepare_trade_batch(trades)  # overlaps the write in flight
                work.dlq += bad
                work.writes.append(("trades", trades, self.store.write_trade_batch, topic))
            elif topic == k.features_topic:
                df, bad = decode_rows(topic, raw, ("symbol", "ts"), origins)
                work.dlq += bad
                for c in FEATURE_COLUMNS:
                    if not df.empty and c not in df:
                        df[c] = np.nan
                work.writes.append(("features", df, self.store.write_features, topic))
            elif topic == k.predictions_topic:
                df, bad = decode_rows(topic, raw, PREDICTION_REQUIRED, origins)
                work.dlq += bad
                work.writes.append(("predictions", df, self.store.write_predictions, topic))
        work.prepared_at = time.perf_counter()
        metrics.DECODE_SECONDS.observe(work.prepared_at - t0)
        return work

    def execute(self, work: Batch) -> None:
        """Write a decoded batch (writer thread): rejects to the DLQ, rows to their tables."""
        metrics.QUEUE_SECONDS.observe(time.perf_counter() - work.prepared_at)
        self._dlq(work.dlq)
        for table, data, write, topic in work.writes:
            self._write(table, data, write, topic)

    def _dlq(self, records: list[DlqRecord]) -> None:
        if records:
            self.store.write_dlq(records)
            for r in records:
                metrics.DLQ_ROWS.labels(r.reason).inc()

    def _write(self, table: str, data: Rows, write: Callable[[Any], int], topic: str) -> None:
        if len(data) == 0:
            return
        t0 = time.perf_counter()
        n = self._write_bisect(table, data, write, topic)
        metrics.WRITE_LATENCY.labels(table).observe(time.perf_counter() - t0)
        metrics.ROWS_WRITTEN.labels(table).inc(n)

    def _write_bisect(self, table: str, data: Rows, write: Callable[[Any], int], topic: str) -> int:
        """Write; if the store refuses rows of the batch (:meth:`Store.is_row_error`), split it
        until the offending rows are isolated and send them to the DLQ with the error."""
        try:
            return write(data)
        except Exception as e:
            # Only a refusal of rows (a value, a constraint) is bisected to the DLQ. Anything
            # else (retries exhausted, a privilege, a missing table) is about the database:
            # every row would be "refused" and committed past; stop instead.
            if not self.store.is_row_error(e):
                raise
            if isinstance(data, TradeBatch):
                # The store sent the batch's constraint rejects to the DLQ before its write
                # failed: bisect the rest only, or every level would send them again.
                data = check_batch(data)[0]
                if len(data) == 0:
                    return 0
            if len(data) == 1:
                if isinstance(data, TradeBatch):
                    payload, key = data.row_json(0), str(data.symbol[0])
                else:
                    row = data.iloc[0]
                    payload = row.to_json(date_format="iso", date_unit="ns")
                    key = str(row.get("symbol"))
                self._dlq(
                    [
                        DlqRecord(
                            source=topic,
                            reason=f"store_{type(e).__name__}",
                            payload=payload,
                            detail=str(e)[:1000],
                            key=key,
                        )
                    ]
                )
                return 0
            mid = len(data) // 2
            return self._write_bisect(
                table, _rows(data, 0, mid), write, topic
            ) + self._write_bisect(table, _rows(data, mid, len(data)), write, topic)

    # ---- periodic ------------------------------------------------------------------------------
    def _housekeeping(self) -> None:
        self._commit([], asynchronous=True)  # what is noted, once the interval has passed
        now = self.clock()
        if self._retention.due(now):  # at start-up, then every interval
            self._retention.done(now)
            apply = getattr(self.store, "apply_retention", None)
            license_ = getattr(self.store, "license", None)
            if apply is not None and license_ is not None and license_() == "apache":
                dropped = apply()
                log.info("retention_applied", chunks_dropped=dropped)


def run(
    settings: Settings,
    *,
    config: SinkSettings | None = None,
    store: Store | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Entry point for ``signalstack sink``: open the configured store, migrate, consume."""
    config = config or settings.sink
    own_store = store is None
    store = store or open_store(
        settings, migrate=True, synchronous_commit=config.synchronous_commit
    )
    sink = KafkaSink(settings, store, config)
    if threading.current_thread() is threading.main_thread():
        tune_gc()  # the service's own process (not when embedded, e.g. in tests)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: sink.stop())
    try:
        sink.run(stop)
    finally:
        if own_store:
            store.close()
