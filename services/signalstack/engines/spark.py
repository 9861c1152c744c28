"""The Spark Structured Streaming job (``signalstack stream --engine spark``; the chart runs
``spark-apps/stream/main.py`` as a SparkApplication).

Plan (one query for features, one for rejected input, each with its own checkpoint):

    Kafka market.trades ──from_json(schema)──┬─ invalid ─> DLQ query: store.dlq + market.trades.dlq
                                             └─ valid ─> withWatermark(event_time, lateness)
        ─> groupBy(symbol).applyInPandasWithState(FeatureStateMachine, NoTimeout, append)
        ─> foreachBatch: bars + features → Store (idempotent upserts), features → market.features,
                         late trades → DLQ (reason "late")

Why the dedup and the 1-minute aggregation run inside ``applyInPandasWithState`` rather than as
``dropDuplicatesWithinWatermark`` + a windowed ``groupBy``: Spark's own stateful operators drop
rows older than the watermark silently, but every rejected input must reach the DLQ; with
``NoTimeout`` Spark passes late rows through and the state function classifies them against
``GroupState.getCurrentWatermarkMs()`` — the same watermark a built-in operator would use. The
function is the engine core the local engine runs (:class:`FeatureStateMachine`), so dedup,
bars and features are the same code, by construction; the parity test checks the rows.

Per symbol, the state (pending trades of open minutes + the current session's minute rows) is an
Arrow IPC blob in the state store (RocksDB provider). Restarting from the checkpoint resumes with
that state and the Kafka offsets: no loss; store writes are upserts, so a re-run batch leaves no
duplicates. Kafka ``market.features`` is at-least-once (a re-run batch re-publishes).

A symbol's last minutes are emitted when the symbol's next trade arrives after the watermark
passed them (the function only runs for keys with data: ``NoTimeout``).
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from signalstack.engines import metrics
from signalstack.engines.base import BarFeatureSink, DlqSink, EngineStats, StreamEngine
from signalstack.engines.core import FeatureStateMachine
from signalstack.features.columns import BAR_COLUMNS, FEATURE_COLUMNS, FEATURE_SET_VERSION
from signalstack.logs import get_logger
from signalstack.observability import HealthServer

log = get_logger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
DLQ_SOURCE = "stream.spark"

# Kafka value → columns (the trade event JSON schema, schemas/json/trade_event.v1.json)
TRADE_DDL = (
    "schema_version INT, symbol STRING, ts_event LONG, price DOUBLE, size DOUBLE, exchange LONG, "
    "conditions ARRAY<LONG>, trade_id STRING, sequence LONG, tape LONG, source STRING, "
    "ts_ingest LONG"
)
OUTPUT_DDL = (
    "kind STRING, symbol STRING, ts LONG, open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, "
    "volume DOUBLE, vwap DOUBLE, trade_count LONG, "
    + ", ".join(f"{c} DOUBLE" for c in FEATURE_COLUMNS)
    + ", payload STRING"
)
STATE_DDL = "pending BINARY, history BINARY"


@dataclass(frozen=True)
class SparkJobConfig:
    """Everything the job needs; defaults suit local[2] tests, override for a cluster."""

    bootstrap: str
    checkpoint_dir: str
    trades_topic: str = "market.trades"
    features_topic: str = "market.features"
    dlq_topic: str = "market.trades.dlq"
    lateness_ms: int = 5_000
    trigger_seconds: float = 1.0
    shuffle_partitions: int = 2  # = cores on local[2]; a cluster: ~2-3 × executor cores
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: int | None = None
    extended_hours: bool = False
    calendar: str = "XNYS"
    master: str = "local[2]"
    app_name: str = "signalstack-stream"
    extra_conf: dict[str, str] = field(default_factory=dict)


def spark_jars() -> list[str]:
    """The spark-sql-kafka connector and its dependencies from the set-up cache."""
    env = os.environ.get("SIGNALSTACK_SPARK_JARS")
    if env:
        return [j for j in env.split(",") if j]
    return sorted(glob.glob(str(REPO_ROOT / ".cache" / "spark-jars" / "jars" / "*.jar")))


def spark_conf(cfg: SparkJobConfig) -> dict[str, str]:
    """Session settings (documented in docs/components/stream.md)."""
    conf = {
        "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions),
        "spark.sql.streaming.stateStore.providerClass": (
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
        ),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.enabled": "false",
        "spark.sql.adaptive.enabled": "false",  # keep the stateful plan's partitioning fixed
        "spark.sql.streaming.noDataMicroBatches.enabled": "false",
    }
    if cfg.master.startswith("local"):
        # local[N]: the driver and its executors share this host; loopback only. On a cluster
        # (k8s://, spark://) the executors must reach the driver at its pod address, which the
        # Spark images' entrypoint supplies (SPARK_DRIVER_BIND_ADDRESS): never pin it here.
        conf["spark.driver.bindAddress"] = "127.0.0.1"
        conf["spark.driver.host"] = "127.0.0.1"
    jars = spark_jars()
    if jars:
        conf["spark.jars"] = ",".join(jars)
    conf.update(cfg.extra_conf)
    return conf


def get_session(cfg: SparkJobConfig) -> Any:
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(cfg.master).appName(cfg.app_name)
    for k, v in spark_conf(cfg).items():
        builder = builder.config(k, v)
    return builder.getOrCreate()


# ---- the state function (runs in the Python workers) -----------------------------------------
@lru_cache(maxsize=4)
def _machine_parts(calendar: str, extended_hours: bool) -> tuple[Any, Any]:
    from signalstack.features.conditions import bundled_rules
    from signalstack.features.sessions import session_index

    return bundled_rules(), session_index(calendar, extended_hours)


def _output_frame(
    symbol: str, bars: pd.DataFrame, feats: pd.DataFrame, late: pd.DataFrame
) -> pd.DataFrame:
    parts = []
    if len(bars):
        merged = bars.merge(
            feats.drop(columns=["feature_set_version"]), on=["symbol", "ts"], how="left"
        )
        merged["ts"] = merged["ts"].astype("int64")
        merged["kind"] = "bar"
        merged["payload"] = None
        parts.append(merged)
    if len(late):
        parts.append(
            pd.DataFrame(
                {
                    "kind": "late",
                    "symbol": symbol,
                    "ts": late["ts_event"].astype("int64"),
                    "payload": late["value"],
                }
            )
        )
    cols = [c.split(" ")[0] for c in OUTPUT_DDL.split(", ")]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    out = pd.concat(parts, ignore_index=True)
    for c in cols:
        if c not in out.columns:
            out[c] = None
    return out[cols]


def _is_backfill(value: Any) -> bool:
    """A late trade's raw JSON names the backfill's source (``polygon_rest``)."""
    import orjson

    from signalstack.engines.local import BACKFILL_SOURCE

    try:
        ev = orjson.loads(value)
    except (orjson.JSONDecodeError, TypeError):
        return False
    return isinstance(ev, dict) and ev.get("source") == BACKFILL_SOURCE


def make_state_function(cfg: SparkJobConfig) -> Callable[..., Iterator[pd.DataFrame]]:
    calendar, extended = cfg.calendar, cfg.extended_hours

    def step(key: tuple[str], pdfs: Iterator[pd.DataFrame], state: Any) -> Iterator[pd.DataFrame]:
        from signalstack.engines import state_codec
        from signalstack.features.trades import SymbolCodes

        symbol = key[0]
        rules, sessions = _machine_parts(calendar, extended)
        machine = FeatureStateMachine(rules, sessions, SymbolCodes([symbol]))
        if state.exists:
            pending, history = state.get
            state_codec.load(machine, pending, history)
        frames = [p for p in pdfs if len(p)]
        batch = (
            pd.concat(frames, ignore_index=True).sort_values(["kpart", "koffset"], kind="stable")
            if frames
            else pd.DataFrame()
        )
        wm_ns = int(state.getCurrentWatermarkMs()) * 1_000_000
        if len(batch):
            batch = batch.reset_index(drop=True)
            step_result = machine.ingest(batch, wm_ns)
            late = batch.iloc[step_result.late_rows]
            if len(late):  # backfill history (--sink kafka) is replayed by the backfill: no DLQ
                late = late[~late["value"].map(_is_backfill).to_numpy(dtype=bool)]
        else:
            late = pd.DataFrame()
        emitted = machine.finalize(wm_ns)
        state.update(state_codec.save(machine))
        yield _output_frame(symbol, emitted.bars, emitted.features, late)

    return step


# ---- the query ---------------------------------------------------------------------------------
def parsed_trades(spark: Any, cfg: SparkJobConfig) -> Any:
    """Kafka → columns + ``reject`` (null for valid rows) + Kafka position for ordering."""
    from pyspark.sql import functions as F  # noqa: N812

    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", cfg.bootstrap)
        .option("subscribe", cfg.trades_topic)
        .option("startingOffsets", cfg.starting_offsets)
        .option("failOnDataLoss", "false")
    )
    if cfg.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(cfg.max_offsets_per_trigger))
    raw = reader.load().select(
        F.col("value").cast("string").alias("value"),
        F.col("key").cast("string").alias("kkey"),
        F.col("partition").alias("kpart"),
        F.col("offset").alias("koffset"),
        F.unix_millis(F.col("timestamp")).alias("kts"),
    )
    t = raw.withColumn(
        "t",
        F.from_json(
            "value",
            TRADE_DDL + ", _corrupt STRING",
            {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt"},
        ),
    )
    reject = (
        F.when(F.col("t").isNull() | F.col("t._corrupt").isNotNull(), F.lit("bad_json"))
        .when(
            F.col("t.symbol").isNull()
            | F.col("t.ts_event").isNull()
            | F.col("t.price").isNull()
            | F.col("t.size").isNull()
            | F.col("t.exchange").isNull()
            | F.col("t.trade_id").isNull()
            | F.col("t.sequence").isNull(),
            F.lit("missing_field"),
        )
        .when(F.col("t.schema_version") != 1, F.lit("schema_version"))
        .when(F.col("t.price") <= 0, F.lit("non_positive_price"))
        .when(F.col("t.size") <= 0, F.lit("non_positive_size"))
    )
    return t.withColumn("reject", reject)


def build_queries(
    spark: Any,
    cfg: SparkJobConfig,
    on_batch: Callable[[pd.DataFrame, int], None],
    on_dlq: Callable[[pd.DataFrame, int], None],
    *,
    available_now: bool = False,
) -> tuple[Any, Any]:
    """Start the features query and the DLQ query; returns both StreamingQuery handles."""
    from pyspark.sql import functions as F  # noqa: N812
    from pyspark.sql.streaming.state import GroupStateTimeout

    t = parsed_trades(spark, cfg)
    good = t.where(F.col("reject").isNull()).select(
        "t.symbol",
        "t.ts_event",
        "t.price",
        "t.size",
        "t.exchange",
        "t.trade_id",
        "t.sequence",
        F.coalesce(F.col("t.conditions"), F.array().cast("array<long>")).alias("conditions"),
        "value",
        "kpart",
        "koffset",
        F.expr("timestamp_micros(t.ts_event div 1000)").alias("event_time"),
    )
    features = (
        good.withWatermark("event_time", f"{cfg.lateness_ms} milliseconds")
        .groupBy("symbol")
        .applyInPandasWithState(
            make_state_function(cfg), OUTPUT_DDL, STATE_DDL, "append", GroupStateTimeout.NoTimeout
        )
    )
    bad = t.where(F.col("reject").isNotNull()).select(
        "value", "kkey", "reject", "kpart", "koffset", "kts"
    )

    def fb(df: Any, batch_id: int) -> None:
        on_batch(df.toPandas(), batch_id)

    def fb_dlq(df: Any, batch_id: int) -> None:
        on_dlq(df.toPandas(), batch_id)

    def start(stream: Any, fn: Any, name: str) -> Any:
        w = (
            stream.writeStream.queryName(f"{cfg.app_name}-{name}".replace("-", "_"))
            .option("checkpointLocation", str(Path(cfg.checkpoint_dir) / name))
            .outputMode("append")
            .foreachBatch(fn)
        )
        w = (
            w.trigger(availableNow=True)
            if available_now
            else w.trigger(processingTime=f"{cfg.trigger_seconds} seconds")
        )
        return w.start()

    return start(features, fb, "features"), start(bad, fb_dlq, "dlq")


# ---- progress metrics -------------------------------------------------------------------------
def query_label(name: str | None, app_name: str) -> str:
    """The ``query`` label of a query named ``<app_name>_<short>`` (``features``, ``dlq``)."""
    prefix = app_name.replace("-", "_") + "_"
    if name and name.startswith(prefix):
        return name[len(prefix) :]
    return name or "unnamed"


_LISTENER_ATTR = "_signalstack_progress_listener"


def progress_listener(app_name: str) -> Any:
    """A StreamingQueryListener exporting each query's progress (engines/metrics.py): input and
    processing rates, batch duration, state rows, watermark delay, Kafka lag; started and
    terminated queries. Runs on the driver; a failure in it is logged, never raised into Spark."""
    from pyspark.sql.streaming.listener import StreamingQueryListener

    class ProgressMetrics(StreamingQueryListener):
        def __init__(self) -> None:
            self.names: dict[str, str] = {}

        def onQueryStarted(self, event: Any) -> None:  # noqa: N802 (Spark's names)
            label = query_label(event.name, app_name)
            self.names[str(event.id)] = label
            metrics.query_started(label)

        def onQueryProgress(self, event: Any) -> None:  # noqa: N802
            try:
                p = event.progress
                metrics.record_progress(query_label(p.name, app_name), json.loads(p.json))
            except Exception as err:
                log.warning("spark_progress_metrics_failed", error=repr(err))

        def onQueryIdle(self, event: Any) -> None:  # noqa: N802
            metrics.query_idle(self.names.get(str(event.id), "unnamed"), event.timestamp)

        def onQueryTerminated(self, event: Any) -> None:  # noqa: N802
            label = self.names.get(str(event.id), "unnamed")
            metrics.query_terminated(label, failed=event.exception is not None)

    return ProgressMetrics()


# ---- foreachBatch → sinks ---------------------------------------------------------------------
def split_output(out: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The state function's rows → (bars, features, late rows) in the frame conventions."""
    bars_rows = out[out["kind"] == "bar"].sort_values(["symbol", "ts"]).reset_index(drop=True)
    ts = pd.to_datetime(bars_rows["ts"].astype("int64"), utc=True)
    bars = bars_rows[list(BAR_COLUMNS)].copy()
    bars["ts"] = ts
    bars["trade_count"] = bars["trade_count"].astype("int64")
    for c in ("open", "high", "low", "close", "volume", "vwap"):
        bars[c] = bars[c].astype("float64")
    feats = bars_rows[["symbol", *FEATURE_COLUMNS]].copy()
    feats.insert(1, "ts", ts)
    for c in FEATURE_COLUMNS:
        feats[c] = feats[c].astype("float64")
    feats["feature_set_version"] = np.int64(FEATURE_SET_VERSION)
    late = out[out["kind"] == "late"].reset_index(drop=True)
    return bars, feats, late


class SparkBatchWriter:
    """foreachBatch target: store upserts (idempotent), features/DLQ to Kafka."""

    def __init__(
        self, sink: BarFeatureSink, dlq: DlqSink | None, publisher: Any, cfg: SparkJobConfig
    ):
        self.sink, self.dlq, self.publisher, self.cfg = sink, dlq, publisher, cfg
        self.stats = EngineStats()

    def on_batch(self, out: pd.DataFrame, batch_id: int) -> None:
        bars, feats, late = split_output(out)
        if len(bars):
            self.sink.write_bars(bars)
            self.sink.write_features(feats)
            if self.publisher is not None:
                self.publisher.publish(feats)
        records = [
            _dlq_record("late", p, "ts_event before the watermark", s, None)
            for p, s in zip(late["payload"], late["symbol"], strict=True)
        ]
        self._dlq(records)
        self.stats.batches += 1
        self.stats.bars_out += len(bars)
        self.stats.features_out += len(feats)
        self.stats.late += len(late)
        log.info("spark batch", batch_id=batch_id, bars=len(bars), late=len(late))

    def on_dlq(self, bad: pd.DataFrame, batch_id: int) -> None:
        topic = self.cfg.trades_topic
        records = [
            _dlq_record(
                r, v, "rejected by the stream job's schema check", k, f"kafka:{topic}:{p}:{o}@{ms}"
            )
            for v, k, r, p, o, ms in zip(
                bad["value"],
                bad["kkey"],
                bad["reject"],
                bad["kpart"],
                bad["koffset"],
                bad["kts"],
                strict=True,
            )
        ]
        self._dlq(records)

    def _dlq(self, records: list[Any]) -> None:
        if not records:
            return
        if self.dlq is not None:
            self.dlq.write_dlq(records)
        if self.publisher is not None and hasattr(self.publisher, "publish_dlq"):
            self.publisher.publish_dlq(records, self.cfg.dlq_topic)
        if self.publisher is not None:
            self.publisher.flush()


def _dlq_record(reason: str, payload: Any, detail: str, key: Any, origin: str | None) -> Any:
    from signalstack.store.base import DlqRecord

    return DlqRecord(
        origin=origin,
        source=DLQ_SOURCE,
        reason=str(reason),
        payload=str(payload),
        detail=detail,
        key=None if key is None or (isinstance(key, float) and np.isnan(key)) else str(key),
        received_at=dt.datetime.now(dt.UTC),
    )


class SparkEngine(StreamEngine):
    """Runs the job in this process (local[N] or against a cluster master)."""

    name = "spark"

    def __init__(
        self,
        cfg: SparkJobConfig,
        sink: BarFeatureSink,
        *,
        dlq: DlqSink | None = None,
        publisher: Any = None,
        http: tuple[str, int] | None = None,
    ) -> None:
        self.cfg = cfg
        if dlq is None and isinstance(sink, DlqSink):
            dlq = sink
        self.writer = SparkBatchWriter(sink, dlq, publisher, cfg)
        self.spark: Any = None
        self.http = http  # (host, port) of /metrics and /health/*, or None
        self.health: HealthServer | None = None  # while run() serves them
        self._queries: tuple[Any, ...] = ()

    def start(self, *, available_now: bool = False) -> tuple[Any, Any]:
        self.spark = self.spark or get_session(self.cfg)
        if getattr(self.spark, _LISTENER_ATTR, None) is None:  # one per session, not per engine
            listener = progress_listener(self.cfg.app_name)
            self.spark.streams.addListener(listener)
            setattr(self.spark, _LISTENER_ATTR, listener)
        self._queries = build_queries(
            self.spark,
            self.cfg,
            self.writer.on_batch,
            self.writer.on_dlq,
            available_now=available_now,
        )
        return self._queries[0], self._queries[1]

    def queries_active(self) -> tuple[bool, str]:
        """Readiness: both queries started and none terminated."""
        if not self._queries:
            return False, "queries not started"
        for q in self._queries:
            if not q.isActive:
                return False, f"query {q.name} terminated"
        return True, "ok"

    def run_available(self) -> EngineStats:
        """Process everything available now, then stop (tests, backfills)."""
        q1, q2 = self.start(available_now=True)
        q1.awaitTermination()
        q2.awaitTermination()
        return self.writer.stats

    def run(self) -> EngineStats:
        health = None
        if self.http is not None:  # answers from the start: the session takes a while
            health = HealthServer(
                self.http[0], self.http[1], None, ready=(self.queries_active,), name="stream-http"
            ).start()
        self.health = health
        try:
            self.spark = self.spark or get_session(self.cfg)
            # a query that terminated earlier in this session would end the wait at once
            self.spark.streams.resetTerminated()
            _q1, _q2 = self.start()
            self.spark.streams.awaitAnyTermination()
            return self.writer.stats
        finally:
            if health is not None:
                health.stop()
                self.health = None
