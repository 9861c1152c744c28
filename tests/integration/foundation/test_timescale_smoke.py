"""The database is real PostgreSQL with the TimescaleDB extension."""

from __future__ import annotations

import psycopg
import pytest

from signalstack.devstack import TimescaleServer

pytestmark = pytest.mark.integration


def test_extension_version_and_edition(timescale_db: object) -> None:
    with psycopg.connect(timescale_db.dsn) as conn:  # type: ignore[attr-defined]
        ext = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
        license_ = conn.execute("SELECT current_setting('timescaledb.license')").fetchone()
        server = conn.execute("SHOW server_version_num").fetchone()
    assert ext is not None and ext[0].startswith("2.")
    # Debian's build is the Apache-2 edition; the migrations branch on this setting.
    assert license_ is not None and license_[0] in {"apache", "timescale"}
    assert server is not None and int(server[0]) >= 170000


def test_hypertable_chunks_and_time_bucket(timescale_db: object) -> None:
    with psycopg.connect(timescale_db.dsn, autocommit=True) as conn:  # type: ignore[attr-defined]
        conn.execute("CREATE TABLE ticks (ts timestamptz NOT NULL, symbol text, price float8)")
        conn.execute("SELECT create_hypertable('ticks', by_range('ts', INTERVAL '1 day'))")
        conn.execute(
            "INSERT INTO ticks SELECT t, 'AAPL', 100 + extract(epoch FROM t)::int % 7 "
            "FROM generate_series('2026-01-05 14:30+00'::timestamptz, "
            "'2026-01-07 21:00+00', INTERVAL '1 minute') t"
        )
        chunks = conn.execute("SELECT count(*) FROM show_chunks('ticks')").fetchone()
        buckets = conn.execute(
            "SELECT time_bucket('1 day', ts) AS d, count(*) FROM ticks GROUP BY d ORDER BY d"
        ).fetchall()
        ht = conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables"
        ).fetchall()
    assert chunks == (3,)
    assert [n for _, n in buckets] == [570, 1440, 1261]
    assert ht == [("ticks",)]


def test_password_auth_is_enforced(timescale: TimescaleServer) -> None:
    bad = timescale.dsn.replace(timescale.password, "wrong-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(bad, connect_timeout=5)
