"""The sink against real Kafka and TimescaleDB: durable-then-commit, DLQ, crash and restart."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import orjson
import psycopg
import pytest
from tests.integration.sink.sink_helpers import (
    DUPLICATES,
    FakeClock,
    committed,
    count_rows,
    log_end,
    make_settings,
    make_topics,
    produce,
    run_capturing,
    start_capturing,
    start_sink,
    trade_messages,
    wait_for,
)

from signalstack.config import Settings
from signalstack.devstack import free_port
from signalstack.sink import KafkaSink, SinkSettings, run
from signalstack.store.base import NUL_ESCAPE
from signalstack.store.timescale import TimescaleStore

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]


def test_sink_writes_all_topics_routes_rejects_and_serves_health(kafka, migrated) -> None:
    topics = make_topics(kafka.bootstrap)
    trades = trade_messages(2_000, seed=1)
    bad = [("AAPL", b"{not json"), ("AAPL", orjson.dumps({"schema_version": 1, "symbol": "AAPL"}))]
    neg = orjson.loads(trades[0][1])
    neg.update(trade_id="neg", price=-5.0)
    bad.append(("AAPL", orjson.dumps(neg)))
    # NUL, which PostgreSQL text cannot hold: a binary value (Confluent wire format starts
    # with a zero byte) and a trade whose symbol has one. Their DLQ rows must still be written.
    bad.append(("AAPL", b"\x00\x00\x00\x00\x07binary"))
    nul = orjson.loads(trades[1][1])
    nul.update(trade_id="nul", symbol="AA\u0000PL")
    bad.append(("AAPL", orjson.dumps(nul)))
    # A valid trade the table cannot hold (exchange is a smallint): a constraint reject the
    # store sends to the DLQ itself, in the same poll as a trade whose write fails (a
    # condition code outside int2, found by bisecting): each must reach the DLQ once.
    wide = orjson.loads(trades[2][1])
    wide.update(trade_id="wide", exchange=40_000)
    bad.append(("AAPL", orjson.dumps(wide)))
    odd = orjson.loads(trades[3][1])
    odd.update(trade_id="wide-condition", conditions=[12, 70_000])
    bad.append(("AAPL", orjson.dumps(odd)))
    produce(kafka.bootstrap, topics[0], trades + trades[:100] + bad)  # includes re-sent rows
    feature = {
        "symbol": "AAPL",
        "ts": "2024-03-05T15:00:00Z",
        "vwap_5m": 101.5,
        "feature_set_version": 1,
    }
    produce(kafka.bootstrap, topics[1], [("AAPL", orjson.dumps(feature))])
    pred = {
        "symbol": "AAPL",
        "ts": 1709650800000000000,
        "model_name": "direction",
        "model_version": "2",
        "value": 0.6,
        "label": "up",
    }
    produce(kafka.bootstrap, topics[2], [("AAPL", orjson.dumps(pred))])

    port = free_port()
    t, stop = start_sink(
        make_settings(kafka.bootstrap, migrated, topics),
        SinkSettings(group_id=f"g-{uuid.uuid4().hex[:6]}", max_batch=500, http_port=port),
    )
    try:
        wait_for(
            lambda: (
                count_rows(migrated, "SELECT count(*) FROM trades") == 2_000
                and count_rows(migrated, "SELECT count(*) FROM dlq") >= 7
            ),
            60,
            "rows",
        )
        wait_for(
            lambda: count_rows(migrated, "SELECT count(*) FROM predictions") == 1, 30, "prediction"
        )
        wait_for(
            lambda: (
                count_rows(migrated, "SELECT count(*) FROM features WHERE vwap_5m = 101.5") == 1
            ),
            30,
            "feature",
        )
        with psycopg.connect(migrated) as conn:
            reasons = sorted(r[0] for r in conn.execute("SELECT reason FROM dlq").fetchall())
            escaped = conn.execute(
                "SELECT count(*) FROM dlq WHERE strpos(payload, %s) > 0", (NUL_ESCAPE,)
            )
            assert escaped.fetchone() == (2,)
        assert reasons == [  # each reject once
            "bad_json",
            "bad_json",
            "exchange_out_of_range",
            "missing_field",
            "non_positive_price",
            "store_OverflowError",
            "text_has_nul",  # the NUL symbol: refused before the database sees it
        ]
        ready = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=5)
        assert ready.status_code == 200
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'signalstack_sink_rows_written_total{table="trades"}' in body
        assert "signalstack_sink_write_latency_seconds_bucket" in body
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive()


def _sink_proc(settings: Settings, group: str, log: Path) -> subprocess.Popen[bytes]:
    k, ts = settings.kafka, settings.timescale
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": k.bootstrap_servers,
        "KAFKA_TRADES_TOPIC": k.trades_topic,
        "KAFKA_FEATURES_TOPIC": k.features_topic,
        "KAFKA_PREDICTIONS_TOPIC": k.predictions_topic,
        "TIMESCALE_HOST": ts.host,
        "TIMESCALE_PORT": str(ts.port),
        "TIMESCALE_USER": ts.user,
        "TIMESCALE_PASSWORD": ts.password.get_secret_value(),
        "TIMESCALE_DATABASE": ts.database,
        "STORE_TYPE": "timescale",
        "SINK_MAX_BATCH": "1000",
        "SINK_HTTP_PORT": "",
        "SINK_GROUP_ID": group,
        "LOG_LEVEL": "INFO",
    }
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "signalstack.sink"], env=env, cwd=REPO, stdout=fh, stderr=fh
        )


@pytest.mark.slow
def test_killed_sink_restarts_without_loss_or_duplicates(kafka, migrated, tmp_path) -> None:
    log = tmp_path / "sink.log"
    topics = make_topics(kafka.bootstrap)
    settings = make_settings(kafka.bootstrap, migrated, topics)
    group = f"g-{uuid.uuid4().hex[:6]}"
    total = 40_000
    msgs = trade_messages(total, seed=7)
    producer = threading.Thread(target=produce, args=(kafka.bootstrap, topics[0], msgs))
    producer.start()
    proc = _sink_proc(settings, group, log)
    try:
        wait_for(
            lambda: count_rows(migrated, "SELECT count(*) FROM trades") >= 5_000, 120, "first rows"
        )
        proc.send_signal(signal.SIGKILL)  # mid-stream: no clean shutdown, no final commit
        proc.wait(30)
        killed_at = count_rows(migrated, "SELECT count(*) FROM trades")
        assert killed_at < total
        producer.join(120)
        proc = _sink_proc(settings, group, log)
        try:
            wait_for(
                lambda: count_rows(migrated, "SELECT count(*) FROM trades") >= total, 240, "rows"
            )
        except AssertionError as e:
            tail = log.read_text(errors="replace")[-3000:]
            n = count_rows(migrated, "SELECT count(*) FROM trades")
            n = f"{n} rows, {log_end(kafka.bootstrap, topics[0])} messages"
            raise AssertionError(f"{e} ({n}/{total}); sink log tail:\n{tail}") from None
        time.sleep(1.0)  # any late duplicate would land now
        assert count_rows(migrated, "SELECT count(*) FROM trades") == total
        assert count_rows(migrated, DUPLICATES) == 0
    finally:
        proc.terminate()
        proc.wait(30)
        producer.join(120)


def test_rows_the_store_refuses_are_isolated_to_the_dlq(kafka, migrated) -> None:
    """A trade valid by the event schema but not storable (a condition code outside int2) is
    bisected out of its batch on the direct write path; the rest of the batch lands."""
    topics = make_topics(kafka.bootstrap)
    trades = trade_messages(300, seed=11)
    odd = orjson.loads(trades[5][1])
    odd.update(trade_id="wide-condition", conditions=[12, 70_000])
    produce(kafka.bootstrap, topics[0], [*trades, ("AAPL", orjson.dumps(odd))])
    t, stop = start_sink(
        make_settings(kafka.bootstrap, migrated, topics),
        SinkSettings(group_id=f"g-{uuid.uuid4().hex[:6]}", http_port=None),
    )
    try:
        wait_for(
            lambda: (
                count_rows(migrated, "SELECT count(*) FROM trades") == 300
                and count_rows(migrated, "SELECT count(*) FROM dlq") == 1
            ),
            60,
            "rows and the reject",
        )
        with psycopg.connect(migrated) as conn:
            row = conn.execute("SELECT reason, key, payload FROM dlq").fetchone()
        assert row is not None
        assert row[0] == "store_OverflowError" and row[1] == odd["symbol"]
        assert orjson.loads(row[2])["trade_id"] == "wide-condition"
        assert (
            count_rows(migrated, "SELECT count(*) FROM trades WHERE trade_id = 'wide-condition'")
            == 0
        )
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive()


def test_a_replay_from_the_start_adds_no_rows_and_no_rejects(kafka, migrated) -> None:
    """A second consumer group reads the whole topic again, as a sink does when it crashes
    before committing: the trades and the rejects stay as they were. Two messages with equal
    bytes are two rejects; a row the database refuses is one reject however often it comes."""
    topics = make_topics(kafka.bootstrap)
    trades = trade_messages(500, seed=21)
    neg = orjson.loads(trades[0][1])
    neg.update(trade_id="neg", price=-5.0)
    odd = orjson.loads(trades[1][1])
    odd.update(trade_id="wide-condition", conditions=[12, 70_000])
    bad = [("AAPL", b"{not json"), ("AAPL", b"{not json"), ("AAPL", orjson.dumps(neg))]
    produce(kafka.bootstrap, topics[0], [*trades, *bad, ("AAPL", orjson.dumps(odd))])
    # Features: good rows, two 1 ns apart (one row to the database), and values of the wrong
    # type, which the store refuses as rows (bisected to the DLQ) instead of stopping the sink.
    t0 = 1_709_650_800_000_000_000
    feats: list[dict] = [
        {"symbol": "MSFT", "ts": t0 + i * 60_000_000_000, "vwap_5m": float(i)} for i in range(40)
    ]
    feats += [{"symbol": "MSFT", "ts": t0 + 1, "vwap_5m": -1.0}]  # same µs as the first
    feats += [{"symbol": None, "ts": t0}, {"symbol": "MSFT", "ts": t0, "feature_set_version": [1]}]
    produce(kafka.bootstrap, topics[1], [("MSFT", orjson.dumps(f)) for f in feats])
    settings = make_settings(kafka.bootstrap, migrated, topics)
    for run_ in range(2):
        group = f"g{run_}-{uuid.uuid4().hex[:6]}"
        t, stop = start_sink(settings, SinkSettings(group_id=group, http_port=None))
        try:
            wait_for(
                lambda g=group: all(
                    committed(kafka.bootstrap, g, topic) == log_end(kafka.bootstrap, topic)
                    for topic in topics[:2]
                ),
                60,
                f"run {run_} to commit both topics",
            )
        finally:
            stop.set()
            t.join(30)
        assert not t.is_alive()  # stopped by us, not by a write error
        assert count_rows(migrated, "SELECT count(*) FROM trades") == 500
        assert count_rows(migrated, "SELECT count(*) FROM features") == 40
        with psycopg.connect(migrated) as conn:
            reasons = sorted(r[0] for r in conn.execute("SELECT reason FROM dlq").fetchall())
        assert reasons == [
            "bad_json",
            "bad_json",
            "non_positive_price",
            "store_OverflowError",
            "store_ValueError",
            "store_ValueError",
        ]


def test_offsets_are_committed_in_batches_and_all_at_shutdown(kafka, migrated) -> None:
    """With a long SINK_COMMIT_INTERVAL_S, rows written after the first commit are durable but
    not yet committed (a crash would replay them, which the idempotent writes absorb); a clean
    stop commits everything that is durable. The first commit comes at once, however long the
    machine has been up (it waited for an uptime of one interval: issue 11)."""
    topics = make_topics(kafka.bootstrap)
    first, second = trade_messages(1_000, seed=11), trade_messages(1_000, seed=12)
    group = f"g-{uuid.uuid4().hex[:6]}"
    cfg = SinkSettings(group_id=group, max_batch=200, http_port=None, commit_interval_s=3600)
    produce(kafka.bootstrap, topics[0], first)
    t, stop = start_sink(make_settings(kafka.bootstrap, migrated, topics), cfg)
    try:
        wait_for(lambda: count_rows(migrated, "SELECT count(*) FROM trades") == 1_000, 60, "first")
        wait_for(lambda: committed(kafka.bootstrap, group, topics[0]) > 0, 30, "first commit")
        early = committed(kafka.bootstrap, group, topics[0])
        produce(kafka.bootstrap, topics[0], second)
        wait_for(lambda: count_rows(migrated, "SELECT count(*) FROM trades") == 2_000, 60, "second")
        time.sleep(1.0)
        assert committed(kafka.bootstrap, group, topics[0]) == early < 2_000
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive()
    assert committed(kafka.bootstrap, group, topics[0]) == log_end(kafka.bootstrap, topics[0])


@pytest.mark.parametrize("booted_s_ago", [0.0, 5.0])
def test_commits_follow_the_injected_clock_wherever_it_starts(
    kafka, migrated, booted_s_ago: float
) -> None:
    """A machine booted seconds ago (``time.monotonic()`` reads 0 or 5) with a 30 s commit
    interval: the first durable batch is committed at once, later ones only when the injected
    clock has moved one interval, however much real time passes. The old sink compared
    ``time.monotonic()`` with a last-commit time of 0.0 and committed nothing for 30 s."""
    topics = make_topics(kafka.bootstrap)
    group = f"g-{uuid.uuid4().hex[:6]}"
    cfg = SinkSettings(group_id=group, max_batch=200, http_port=None, commit_interval_s=30)
    clock = FakeClock(booted_s_ago)
    # Commit-time durability: no WAL flush position to poll (that poll runs on the clock too).
    store = TimescaleStore(migrated, synchronous_commit=True)
    sink = KafkaSink(make_settings(kafka.bootstrap, migrated, topics), store, cfg, clock=clock)
    errors: list[BaseException] = []
    produce(kafka.bootstrap, topics[0], trade_messages(1_000, seed=13))
    t = start_capturing(sink.run, errors)
    try:
        wait_for(lambda: count_rows(migrated, "SELECT count(*) FROM trades") == 1_000, 60, "rows")
        wait_for(lambda: committed(kafka.bootstrap, group, topics[0]) > 0, 30, "first commit")
        early = committed(kafka.bootstrap, group, topics[0])
        produce(kafka.bootstrap, topics[0], trade_messages(1_000, seed=14))
        wait_for(lambda: count_rows(migrated, "SELECT count(*) FROM trades") == 2_000, 60, "more")
        time.sleep(1.0)  # real time passes; the sink's clock does not
        assert committed(kafka.bootstrap, group, topics[0]) == early < 2_000
        clock.now += 30.0
        end = log_end(kafka.bootstrap, topics[0])
        wait_for(lambda: committed(kafka.bootstrap, group, topics[0]) == end, 30, "next commit")
    finally:
        sink.stop()
        t.join(30)
        store.close()
    assert not t.is_alive()
    assert errors == []


class _HeldFlush(TimescaleStore):
    """The real store, with its WAL flush position held back until released: what a slow
    walwriter looks like to the sink."""

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn, synchronous_commit=False)
        self.release = threading.Event()

    def durable_position(self) -> int | None:
        pos = super().durable_position()
        return pos if self.release.is_set() else 0


def test_offsets_wait_for_the_wal_flush_when_commits_are_asynchronous(kafka, migrated) -> None:
    topics = make_topics(kafka.bootstrap)
    group = f"g-{uuid.uuid4().hex[:6]}"
    cfg = SinkSettings(group_id=group, max_batch=200, http_port=None, commit_interval_s=0.1)
    store = _HeldFlush(migrated)
    produce(kafka.bootstrap, topics[0], trade_messages(1_000, seed=21))
    stop = threading.Event()
    t = threading.Thread(
        target=run,
        args=(make_settings(kafka.bootstrap, migrated, topics),),
        kwargs={"config": cfg, "store": store, "stop": stop},
    )
    t.start()
    try:
        # Visible at once (the COPY returned), but not flushed: nothing may be committed.
        wait_for(lambda: count_rows(migrated, "SELECT count(*) FROM trades") == 1_000, 60, "rows")
        time.sleep(1.5)
        assert committed(kafka.bootstrap, group, topics[0]) == 0
        store.release.set()
        end = log_end(kafka.bootstrap, topics[0])
        wait_for(lambda: committed(kafka.bootstrap, group, topics[0]) == end, 30, "commit")
    finally:
        stop.set()
        t.join(30)
        store.close()
    assert not t.is_alive()


@pytest.mark.slow
def test_postgres_crash_mid_stream_rewinds_and_loses_nothing(kafka, timescale, migrated) -> None:
    """Commits are asynchronous: a crash loses the last ones the server acknowledged. The sink
    sees the server restart, seeks back to its committed offsets and replays; in the end every
    trade is there exactly once."""
    from signalstack.sink import metrics

    topics = make_topics(kafka.bootstrap)
    msgs = trade_messages(40_000, seed=31)
    group = f"g-{uuid.uuid4().hex[:6]}"
    cfg = SinkSettings(group_id=group, max_batch=500, http_port=None, commit_interval_s=0.2)
    rewinds0 = metrics.REWINDS._value.get()
    consumed0 = metrics.MESSAGES.labels(topics[0])._value.get()
    producer = threading.Thread(target=produce, args=(kafka.bootstrap, topics[0], msgs))
    producer.start()
    t, stop = start_sink(make_settings(kafka.bootstrap, migrated, topics), cfg)
    try:
        wait_for(
            lambda: count_rows(migrated, "SELECT count(*) FROM trades") > 5_000, 60, "progress"
        )
        timescale.crash()
        producer.join(120)
        wait_for(lambda: count_rows(migrated, "SELECT count(*) FROM trades") == 40_000, 120, "all")
        wait_for(lambda: committed(kafka.bootstrap, group, topics[0]) == 40_000, 30, "commit")
    finally:
        stop.set()
        t.join(60)
    assert not t.is_alive()
    assert metrics.REWINDS._value.get() > rewinds0
    assert metrics.MESSAGES.labels(topics[0])._value.get() - consumed0 > 40_000  # replayed
    assert count_rows(migrated, DUPLICATES) == 0


def test_a_batch_lost_in_a_rebalance_stops_the_sink_and_nothing_is_committed_past_it(
    kafka, migrated
) -> None:
    """A write that fails while partitions are being revoked (the database down past the retry
    budget) must not be logged and forgotten: with cooperative rebalancing the consumer keeps
    some partitions, positioned after the lost batch, and later commits would pass its rows.
    The rebalance callback is driven directly (a group rebalance cannot be timed to land
    while one particular write is in flight); the broker and the database are real."""
    from concurrent.futures import Future

    from signalstack.sink.service import KafkaSink
    from signalstack.store.writer import WriteAbortedError

    topics = make_topics(kafka.bootstrap)
    group = f"g-{uuid.uuid4().hex[:6]}"
    cfg = SinkSettings(group_id=group, max_batch=500, http_port=None, commit_interval_s=0.0)
    store = TimescaleStore(migrated)
    sink = KafkaSink(make_settings(kafka.bootstrap, migrated, topics), store, cfg)
    try:
        produce(kafka.bootstrap, topics[0], trade_messages(200, seed=41))
        sink.consumer.subscribe([topics[0]])
        msgs: list = []
        deadline = time.monotonic() + 60
        while len(msgs) < 200 and time.monotonic() < deadline:
            msgs += [m for m in sink.consumer.consume(500, 1.0) if m.error() is None]
        assert len(msgs) == 200
        work = sink.prepare(msgs)
        work.direct = True
        lost: Future[int] = Future()
        lost.set_exception(WriteAbortedError("database down past the retry budget"))
        sink._inflight = (lost, work)
        with pytest.raises(WriteAbortedError):
            sink._on_revoke(sink.consumer, sink.consumer.assignment())
        # Nothing is committed from now on, not even offsets noted later.
        sink._commit(work.offsets, asynchronous=False)
        assert committed(kafka.bootstrap, group, topics[0]) == 0
        with pytest.raises(WriteAbortedError):
            sink.run()  # the loop stops on its first turn: the process exits and restarts
        assert committed(kafka.bootstrap, group, topics[0]) == 0
        assert count_rows(migrated, "SELECT count(*) FROM trades") == 0
    finally:
        store.close()


def _refuse_trades(dsn: str, sqlstate: str, *, once: bool) -> None:
    """A trigger on ``trades`` that raises ``sqlstate`` from the database itself (for the first
    row only when ``once``: a sequence survives the rollback that a table counter would not)."""
    guard = "nextval('refuse_once') = 1" if once else "true"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE IF NOT EXISTS refuse_once")
        conn.execute(
            "CREATE FUNCTION refuse_trades() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF {guard} THEN RAISE EXCEPTION 'refused by the test' USING ERRCODE = '{sqlstate}';"
            " END IF; RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON trades "
            "FOR EACH ROW EXECUTE FUNCTION refuse_trades()"
        )


def test_an_error_about_the_database_not_the_rows_stops_the_sink_and_dlqs_nothing(
    kafka, migrated
) -> None:
    """A refusal that is not about the rows (here a privilege error, raised by PostgreSQL on
    every row) must not be bisected into the DLQ with its offsets committed: every trade would
    be 'rejected'. The sink stops without committing; the restart retries."""
    import asyncpg

    topics = make_topics(kafka.bootstrap)
    group = f"g-{uuid.uuid4().hex[:6]}"
    cfg = SinkSettings(group_id=group, max_batch=500, http_port=None, commit_interval_s=0.0)
    _refuse_trades(migrated, "42501", once=False)
    produce(kafka.bootstrap, topics[0], trade_messages(300, seed=51))
    errors: list[BaseException] = []
    t, stop = run_capturing(make_settings(kafka.bootstrap, migrated, topics), cfg, errors)
    t.join(60)
    stop.set()
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], asyncpg.InsufficientPrivilegeError)
    assert count_rows(migrated, "SELECT count(*) FROM dlq") == 0
    assert committed(kafka.bootstrap, group, topics[0]) == 0


def test_a_deadlock_is_retried_not_sent_to_the_dlq(kafka, migrated) -> None:
    from signalstack.sink import metrics

    topics = make_topics(kafka.bootstrap)
    group = f"g-{uuid.uuid4().hex[:6]}"
    cfg = SinkSettings(group_id=group, max_batch=500, http_port=None, commit_interval_s=0.0)
    _refuse_trades(migrated, "40P01", once=True)  # deadlock_detected, on the first row only
    retries0 = metrics.WRITE_RETRIES._value.get()
    rewinds0 = metrics.REWINDS._value.get()
    produce(kafka.bootstrap, topics[0], trade_messages(300, seed=52))
    errors: list[BaseException] = []
    t, stop = run_capturing(make_settings(kafka.bootstrap, migrated, topics), cfg, errors)
    try:
        wait_for(lambda: count_rows(migrated, "SELECT count(*) FROM trades") == 300, 60, "rows")
        wait_for(lambda: committed(kafka.bootstrap, group, topics[0]) == 300, 30, "commit")
    finally:
        stop.set()
        t.join(30)
    assert errors == []
    assert count_rows(migrated, "SELECT count(*) FROM dlq") == 0
    assert metrics.WRITE_RETRIES._value.get() > retries0
    # The connection survived the aborted transaction: nothing was lost, nothing to replay.
    assert metrics.REWINDS._value.get() == rewinds0


@pytest.mark.slow
def test_a_backend_crash_the_postmaster_survives_rewinds_and_loses_nothing(
    kafka, timescale, migrated
) -> None:
    """A backend killed by SIGKILL (what the OOM killer does) makes the postmaster terminate
    every session and run crash recovery without restarting, so its start time stays; the
    sink's idle connections are reopened silently on their next use. Commits acknowledged
    but not yet flushed are gone: the sink must rewind, not commit past them later."""
    from signalstack.sink import metrics

    topics = make_topics(kafka.bootstrap)
    group = f"g-{uuid.uuid4().hex[:6]}"
    cfg = SinkSettings(group_id=group, max_batch=500, http_port=None, commit_interval_s=0.1)
    # Hold asynchronous commits in the WAL buffers for a while (restored below). Anything else
    # that flushes the WAL flushes them too, so nothing may meanwhile: a synchronous commit by
    # any session (TimescaleDB's job scheduler commits in every database), and whatever writes
    # data pages (a checkpoint: one now; the background writer; autovacuum).
    held = {
        "wal_writer_delay": "10s",
        "wal_writer_flush_after": "256MB",
        "synchronous_commit": "off",
        "bgwriter_lru_maxpages": "0",
        "autovacuum": "off",
    }
    with psycopg.connect(migrated, autocommit=True) as conn:
        for name, value in held.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        conn.execute("SELECT pg_reload_conf()")
        conn.execute("CHECKPOINT")
    rewinds0 = metrics.REWINDS._value.get()
    t, stop = start_sink(make_settings(kafka.bootstrap, migrated, topics), cfg)
    total, lost, losses = 0, 0, []
    try:
        # The walwriter still flushes every 10 s (its longest delay): if one of its rounds
        # falls between a batch's commit and the kill, that crash loses nothing. Crash again
        # with a fresh batch then (each try is a few seconds; three misses in a row are rare).
        for attempt in range(4):
            produce(kafka.bootstrap, topics[0], trade_messages(2_000, seed=61 + attempt))
            total += 2_000
            wait_for(
                lambda n=total: count_rows(migrated, "SELECT count(*) FROM trades") == n,
                60,
                f"batch {attempt}",
            )
            # Kill the backend of a connection that is still open: once closed, its backend
            # may have exited already (no such process) or be exiting normally (no crash).
            conn = psycopg.connect(migrated, autocommit=True)
            try:
                row = conn.execute("SELECT pg_postmaster_start_time(), pg_backend_pid()").fetchone()
                assert row is not None
                started, pid = row
                os.kill(pid, signal.SIGKILL)  # a backend, not the postmaster
            finally:
                with contextlib.suppress(psycopg.Error):
                    conn.close()
            wait_for(lambda: _ready(migrated), 60, "crash recovery")
            lost = total - count_rows(migrated, "SELECT count(*) FROM trades")
            losses.append(lost)
            with psycopg.connect(migrated) as conn:
                row = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
            assert row == (started,)  # the same postmaster: no restart to notice
            if lost > 0:
                break
        produce(kafka.bootstrap, topics[0], trade_messages(2_000, seed=69))
        total += 2_000
        wait_for(lambda: count_rows(migrated, "SELECT count(*) FROM trades") == total, 120, "all")
        wait_for(lambda: committed(kafka.bootstrap, group, topics[0]) == total, 60, "commit")
    finally:
        stop.set()
        t.join(60)
        with psycopg.connect(migrated, autocommit=True) as conn:
            for name in held:
                conn.execute(f"ALTER SYSTEM RESET {name}")
            conn.execute("SELECT pg_reload_conf()")
    assert not t.is_alive()
    assert lost > 0, f"no crash lost acknowledged rows ({losses}): the test proved nothing"
    assert metrics.REWINDS._value.get() > rewinds0
    assert count_rows(migrated, DUPLICATES) == 0


def _ready(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False
