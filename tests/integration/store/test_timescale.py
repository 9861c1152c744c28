"""TimescaleDB-specific acceptance: idempotent bulk writes, survival of a server restart,
edition fallbacks, Community statements planned on the Apache server."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator

import pandas as pd
import psycopg
import pytest

from signalstack.store.base import DlqRecord
from signalstack.store.edition import (
    APACHE,
    COMMUNITY,
    ROLLUPS,
    cagg_select,
    rebuild_statements_for,
    rollup_select,
)
from signalstack.store.migrations import applied, migrate, sql_dir
from signalstack.store.synthetic import synthetic_trades
from signalstack.store.timescale import TimescaleStore
from signalstack.store.writer import RetryPolicy

pytestmark = pytest.mark.integration


@pytest.fixture
def ts_store(timescale_db) -> Iterator[TimescaleStore]:
    s = TimescaleStore(
        timescale_db.dsn, retry=RetryPolicy(initial_s=0.05, max_s=1.0, deadline_s=60)
    )
    s.migrate()
    try:
        yield s
    finally:
        s.close()


def _duplicates(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM trades GROUP BY symbol, exchange, trade_id, "
            "ts_event_ns HAVING count(*) > 1) d"
        ).fetchone()
    assert row is not None
    return int(row[0])


ALL_MIGRATIONS = [
    "001_core_tables",
    "002_edition_features",
    "003_dlq_dedup_key",
    "004_backfill_progress",
    "005_model_decisions",
    "006_ohlcv_source",
    "007_rollup_vwap",
]


def test_migrations_are_recorded(timescale_db) -> None:
    s = TimescaleStore(timescale_db.dsn)
    try:
        assert s.migrate() == ALL_MIGRATIONS
        assert s.migrate() == []
        assert applied(timescale_db.dsn) == ALL_MIGRATIONS
        assert s.license() == "apache"
    finally:
        s.close()


def test_the_dlq_key_migration_keeps_every_earlier_reject(timescale_db, tmp_path) -> None:
    """A database at 002 with rejects in its dlq (equal ones among them) upgrades without
    losing or merging any: each earlier row gets a key of its own."""
    old = tmp_path / "sql"
    old.mkdir()
    for name in ALL_MIGRATIONS[:2]:
        src = next(sql_dir().glob(f"{name}.*"))
        shutil.copy(src, old / src.name)
    assert migrate(timescale_db.dsn, old) == ALL_MIGRATIONS[:2]
    with psycopg.connect(timescale_db.dsn) as conn:
        for _ in range(2):
            conn.execute(
                "INSERT INTO dlq (source, reason, payload) "
                "VALUES ('market.trades', 'bad_json', '{')"
            )
    s = TimescaleStore(timescale_db.dsn)
    try:
        assert s.migrate() == ALL_MIGRATIONS[2:]
        rec = DlqRecord(source="market.trades", reason="bad_json", payload="{", origin="k:0:1")
        assert s.write_dlq([rec, rec]) == 1
        assert s.count("dlq") == 3
    finally:
        s.close()
    with psycopg.connect(timescale_db.dsn) as conn:
        # a writer of the previous release (no dedup_key) during a rolling upgrade
        conn.execute("INSERT INTO dlq (source, reason, payload) VALUES ('old', 'bad_json', '{')")
        keys = [r[0] for r in conn.execute("SELECT dedup_key FROM dlq ORDER BY id").fetchall()]
    assert keys[:2] == ["id:1", "id:2"] and keys[2] == rec.dedup_key
    assert keys[3].startswith("legacy:")


@pytest.mark.slow
def test_same_100k_trades_twice_leave_100k_rows(ts_store: TimescaleStore, timescale_db) -> None:
    df = synthetic_trades(100_000, seed=11)
    assert ts_store.write_trades(df) == 100_000
    assert ts_store.last_write is not None and ts_store.last_write.path == "copy"
    assert ts_store.write_trades(df) == 0
    assert ts_store.last_write.path == "merge"
    # A batch mixing replayed and fresh rows keeps the fresh ones.
    fresh = synthetic_trades(1_000, seed=12, id_prefix="f")
    assert ts_store.write_trades(pd.concat([df.iloc[:5_000], fresh])) == 1_000
    assert ts_store.count("trades") == 101_000
    assert _duplicates(timescale_db.dsn) == 0


def test_a_large_frame_is_written_in_pipelined_slices_with_every_reject_kept(timescale_db) -> None:
    """write_trades validates slice k+1 while slice k is written: rows and DLQ records from
    every slice arrive, each once."""
    store = TimescaleStore(timescale_db.dsn, batch_rows=4_000, chunk_rows=1_000)
    store.migrate()
    try:
        df = synthetic_trades(9_500, seed=21)
        bad = [10, 2_500, 4_100, 9_499]  # in the first, third, fifth and last slice
        df.loc[bad, "price"] = -1.0
        assert store.write_trades(df) == 9_500 - len(bad)
        assert store.write_trades(df) == 0  # a replay: every slice takes the merge path
        assert store.count("trades") == 9_500 - len(bad)
        assert _duplicates(timescale_db.dsn) == 0
        with psycopg.connect(timescale_db.dsn) as conn:
            got = conn.execute("SELECT reason, count(*) FROM dlq GROUP BY reason").fetchall()
        assert got == [("trades_price_positive", len(bad))]  # the replay refuses the same rows
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("rows", "frames"),
    [(5_000, 30), (40_000, 6)],  # one COPY per frame; frames split over two connections
    ids=["single", "parallel"],
)
def test_postgres_restart_mid_write_loses_and_duplicates_nothing(
    timescale, timescale_db, rows: int, frames: int
) -> None:
    retries: list[int] = []
    store = TimescaleStore(
        timescale_db.dsn,
        batch_rows=rows,
        chunk_rows=rows // 2,
        retry=RetryPolicy(initial_s=0.05, max_s=0.5, deadline_s=60),
        on_retry=lambda: retries.append(1),
    )
    store.migrate()
    batches = [synthetic_trades(rows, seed=100 + i, id_prefix=f"b{i}-") for i in range(frames)]
    done: list[int] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for b in batches:
                store.write_trades(b)
                done.append(len(b))
        except BaseException as e:  # surfaced below
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    while len(done) < frames // 6:
        time.sleep(0.01)
    timescale.restart()
    t.join(120)
    try:
        assert not errors, errors
        assert sum(done) == rows * frames
        assert store.count("trades") == rows * frames
        assert _duplicates(timescale_db.dsn) == 0
        assert retries, "the restart should have forced at least one retry"
    finally:
        store.close()


def test_community_statements_are_planned_and_refused_only_by_license(
    timescale_db, ts_store
) -> None:
    with psycopg.connect(timescale_db.dsn, autocommit=True) as conn:
        for width in ROLLUPS.values():
            for select in (rollup_select(width), cagg_select(width)):  # against the real schema
                conn.execute("EXPLAIN " + select)
        for sql in COMMUNITY:
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="license"):
                conn.execute(sql)
        # 007's rebuild: the Apache views replaced in place; each Community cagg dropped,
        # created again (refused here by license, like 002's) and refreshed over all history.
        assert rebuild_statements_for("apache") == APACHE
        rebuild = rebuild_statements_for("timescale")
        assert [r.split(" AS ")[0] for r in rebuild if r.startswith("DROP")] == [
            f"DROP MATERIALIZED VIEW IF EXISTS {name}" for name in ROLLUPS
        ]
        assert [r for r in rebuild if r.startswith("CALL")] == [
            f"CALL refresh_continuous_aggregate('{name}', NULL, NULL)" for name in ROLLUPS
        ]
        for sql in rebuild:
            if sql.startswith("CREATE") or sql.startswith("SELECT add_"):
                assert sql in COMMUNITY
        # A broken statement fails differently (so the assertion above can fail).
        with pytest.raises(psycopg.errors.UndefinedColumn):
            conn.execute(
                "CREATE MATERIALIZED VIEW broken WITH (timescaledb.continuous) AS "
                "SELECT no_such_column FROM ohlcv_1m GROUP BY 1 WITH NO DATA"
            )


def test_apache_fallback_views_roll_up_bars(ts_store: TimescaleStore, timescale_db) -> None:
    t0 = pd.Timestamp("2024-03-05 14:30:00+00:00")
    ends = [t0 + pd.Timedelta(minutes=i) for i in range(1, 11)]  # 14:31 .. 14:40
    bars = pd.DataFrame(
        {
            "symbol": "AAPL",
            "ts": ends,
            "open": [float(i) for i in range(10)],
            "high": [10.0 + i for i in range(10)],
            "low": [float(i) - 1 for i in range(10)],
            "close": [float(i) + 0.5 for i in range(10)],
            "volume": 100.0,
            "vwap": 1.0,
            "trade_count": 2,
        }
    )
    ts_store.write_bars(bars)
    with psycopg.connect(timescale_db.dsn) as conn:
        assert conn.execute(
            "SELECT table_type FROM information_schema.tables WHERE table_name = 'ohlcv_5m'"
        ).fetchone() == ("VIEW",)
        rows = conn.execute(
            "SELECT ts, open, high, low, close, volume, trade_count FROM ohlcv_5m ORDER BY ts"
        ).fetchall()
    assert [r[0] for r in rows] == [t0 + pd.Timedelta(minutes=5), t0 + pd.Timedelta(minutes=10)]
    assert rows[0][1:] == (0.0, 14.0, -1.0, 4.5, 500.0, 10)
    assert rows[1][1:] == (5.0, 19.0, 4.0, 9.5, 500.0, 10)


def test_apache_retention_fallback_drops_old_chunks(ts_store: TimescaleStore) -> None:
    old = synthetic_trades(100, seed=1, start="2024-01-02 15:00:00+00:00", span_s=60)
    new = synthetic_trades(100, seed=2, start="2024-01-20 15:00:00+00:00", span_s=60, id_prefix="n")
    ts_store.write_trades(old)
    ts_store.write_trades(new)
    assert ts_store.apply_retention(now="2024-01-21 00:00:00+00:00") >= 1
    assert ts_store.count("trades") == 100
