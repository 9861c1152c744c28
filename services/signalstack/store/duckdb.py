"""Embedded store: DuckDB (a file or in memory), the no-cluster default (``STORE_TYPE=duckdb``).

Same tables and keys as TimescaleDB (sql/duckdb/001_schema.sql), same idempotency: trades are
``INSERT … ON CONFLICT DO NOTHING`` on the trade identity, the other tables upsert on their key.
One connection guarded by a lock: DuckDB allows one writing process per file, and the embedded
demo runs every component in one process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import duckdb
import orjson
import pandas as pd

from signalstack.store import frames
from signalstack.store.base import (
    BACKFILL_RANGE_COLUMNS,
    BACKFILL_RUN_COLUMNS,
    BACKFILL_RUN_UPDATES,
    DLQ_COLUMNS,
    DRIFT_COLUMNS,
    FEATURE_COLUMNS,
    MODEL_DECISION_COLUMNS,
    BackfillRange,
    BackfillRun,
    DlqRecord,
    GapKind,
    Store,
    StoreError,
    TimeLike,
    backfill_range_rows,
    backfill_ranges_from_frame,
    backfill_run_from_row,
    backfill_run_row,
    dlq_columns,
    drift_from_frame,
    model_decisions_from_frame,
    to_utc,
)
from signalstack.store.migrations import sql_dir

_TABLES = frozenset({"trades", "ohlcv_1m", "features", "predictions", "anomalies", "dlq", "drift"})
_FEATURE_SELECT = ", ".join(["symbol", "ts", *FEATURE_COLUMNS, "feature_set_version"])
_LOCKS: dict[tuple[str, str], threading.Lock] = {}  # try_lock's, per (file, name)
_LOCKS_GUARD = threading.Lock()


def _py(ts: pd.Timestamp) -> dt.datetime:
    return ts.to_pydatetime()


class DuckDBStore(Store):
    # Conversion / out-of-range (DataError) and NOT NULL / key violations (IntegrityError).
    row_errors = (*Store.row_errors, duckdb.DataError, duckdb.IntegrityError)
    kind = "duckdb"

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        try:
            self._con = duckdb.connect(path)
        except duckdb.Error as e:
            raise StoreError(f"cannot open DuckDB store at {path!r}: {e}") from e
        self._con.execute("SET TimeZone = 'UTC'")
        self._lock = threading.RLock()

    # ---- helpers -------------------------------------------------------------------------------
    def _sql(
        self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run ``query`` and fetch its rows under the lock: DuckDB refuses a call on a
        connection another thread is using ("connection is busy"), and a result fetched after
        the lock is released is such a call."""
        with self._lock:
            result = (
                self._con.execute(query, params) if params is not None else self._con.execute(query)
            )
            return list(result.fetchall())

    def _df(self, query: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        with self._lock:
            return self._con.execute(query, params).df()

    def _insert_frame(self, table: str, df: pd.DataFrame, conflict: str) -> int:
        if df.empty:
            return 0
        cols = ", ".join(df.columns)
        with self._lock:
            self._con.register("_batch", df)
            try:
                row = self._con.execute(
                    f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _batch {conflict}"
                ).fetchone()
            finally:
                self._con.unregister("_batch")
        return int(row[0]) if row else 0

    @staticmethod
    def _upsert(key: Sequence[str], columns: Iterable[str]) -> str:
        sets = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
        return f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}"

    # ---- lifecycle -----------------------------------------------------------------------------
    def migrate(self) -> list[str]:
        with self._lock:
            self._con.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(id VARCHAR PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
            )
            done = {r[0] for r in self._con.execute("SELECT id FROM schema_migrations").fetchall()}
            applied: list[str] = []
            for path in sorted((sql_dir() / "duckdb").glob("*.sql")):
                if path.stem in done:
                    continue
                self._con.execute("BEGIN")
                try:
                    self._con.execute(path.read_text())
                    self._con.execute(
                        "INSERT INTO schema_migrations VALUES (?, now())", [path.stem]
                    )
                    self._con.execute("COMMIT")
                except BaseException:
                    self._con.execute("ROLLBACK")
                    raise
                applied.append(path.stem)
            return applied

    def close(self) -> None:
        with self._lock:
            self._con.close()

    # ---- writes --------------------------------------------------------------------------------
    def write_trades(self, df: pd.DataFrame) -> int:
        typed, rejects = frames.prepare_trades(df)
        if rejects:
            self.write_dlq(rejects)
        typed["conditions"] = typed["conditions"].map(lambda c: [int(x) for x in c])
        return self._insert_frame("trades", typed, "ON CONFLICT DO NOTHING")

    def write_bars(self, df: pd.DataFrame) -> int:
        typed = frames.prepare_bars(df)
        return self._insert_frame("ohlcv_1m", typed, self._upsert(["symbol", "ts"], typed.columns))

    def write_vendor_bars(self, df: pd.DataFrame) -> int:
        typed = frames.prepare_vendor_bars(df)
        conflict = self._upsert(["symbol", "ts"], typed.columns)
        return self._insert_frame(
            "ohlcv_1m", typed, f"{conflict} WHERE {frames.vendor_bar_replaces_sql()}"
        )

    def write_features(self, df: pd.DataFrame) -> int:
        typed = frames.prepare_features(df)
        key = ["symbol", "feature_set_version", "ts"]
        return self._insert_frame("features", typed, self._upsert(key, typed.columns))

    def write_predictions(self, df: pd.DataFrame) -> int:
        typed = frames.prepare_predictions(df)
        key = ["symbol", "model_name", "model_version", "ts"]
        return self._insert_frame("predictions", typed, self._upsert(key, typed.columns))

    def write_anomalies(self, df: pd.DataFrame) -> int:
        typed = frames.prepare_anomalies(df)
        key = ["symbol", "model_version", "ts"]
        return self._insert_frame("anomalies", typed, self._upsert(key, typed.columns))

    def write_drift(self, df: pd.DataFrame) -> int:
        typed = frames.prepare_drift(df)
        key = ["feature", "feature_set_version", "window_start", "window_end"]
        return self._insert_frame("drift", typed, self._upsert(key, typed.columns))

    def write_dlq(self, records: Iterable[DlqRecord]) -> int:
        recs = list(records)
        if not recs:
            return 0
        cols = dlq_columns(recs)
        frame = pd.DataFrame(
            {
                **cols,
                "received_at": pd.to_datetime(cols["received_at"], utc=True),
                "key": pd.Series(cols["key"], dtype=object),
            }
        )
        with self._lock:
            self._con.register("_dlq_in", frame)
            try:
                row = self._con.execute(
                    f"INSERT INTO dlq ({', '.join(DLQ_COLUMNS)}) "
                    "SELECT * FROM _dlq_in ON CONFLICT (dedup_key) DO NOTHING"
                ).fetchone()
            finally:
                self._con.unregister("_dlq_in")
        return int(row[0]) if row else 0

    def record_backfill_run(self, run: BackfillRun) -> None:
        sets = ", ".join(f"{c} = excluded.{c}" for c in BACKFILL_RUN_UPDATES)
        self._sql(
            f"INSERT INTO backfill_runs ({', '.join(BACKFILL_RUN_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(BACKFILL_RUN_COLUMNS))}) "
            f"ON CONFLICT (run_id) DO UPDATE SET {sets}",
            list(backfill_run_row(run)),
        )

    def backfill_run(self, run_id: str) -> BackfillRun | None:
        rows = self._sql(
            f"SELECT {', '.join(BACKFILL_RUN_COLUMNS)} FROM backfill_runs WHERE run_id = ?",
            [run_id],
        )
        return backfill_run_from_row(rows[0]) if rows else None

    def record_backfill_ranges(self, ranges: Sequence[BackfillRange]) -> None:
        rows = backfill_range_rows(ranges)
        if not rows:
            return
        cols = ", ".join(BACKFILL_RANGE_COLUMNS)
        sets = ", ".join(f"{c} = excluded.{c}" for c in BACKFILL_RANGE_COLUMNS[2:])
        with self._lock:
            self._con.executemany(
                f"INSERT INTO backfill_ranges ({cols}, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, now()) "
                f"ON CONFLICT (run_id, seq) DO UPDATE SET {sets}, updated_at = now()",
                rows,
            )

    def backfill_ranges(self, run_id: str) -> list[BackfillRange]:
        df = self._df(
            f"SELECT {', '.join(BACKFILL_RANGE_COLUMNS)} FROM backfill_ranges "
            "WHERE run_id = ? ORDER BY seq",
            [run_id],
        )
        return backfill_ranges_from_frame(df)

    def checked_ranges(
        self,
        symbols: Sequence[str],
        start: TimeLike,
        end: TimeLike,
        sources: Sequence[str] | None = None,
    ) -> list[BackfillRange]:
        df = self._df(
            f"SELECT {', '.join(BACKFILL_RANGE_COLUMNS)} FROM backfill_ranges "
            "WHERE status = 'done' AND symbol IN (SELECT unnest(?::VARCHAR[])) "
            "AND start_ts < ? AND end_ts > ? AND (?::VARCHAR[] IS NULL OR run_id IN "
            "(SELECT run_id FROM backfill_runs WHERE list_contains(?::VARCHAR[], source))) "
            "ORDER BY symbol, start_ts",
            [
                list(symbols), _py(to_utc(end)), _py(to_utc(start)),
                None if sources is None else list(sources),
                None if sources is None else list(sources),
            ],
        )  # fmt: skip
        return backfill_ranges_from_frame(df)

    @contextlib.contextmanager
    def try_lock(self, name: str) -> Iterator[bool]:
        # Another process cannot open the file while this one has it open (DuckDB locks it),
        # so only this process's threads can contend: a lock per (file, name).
        where = self.path if self.path != ":memory:" else f"memory:{id(self)}"
        with _LOCKS_GUARD:
            lock = _LOCKS.setdefault((where, name), threading.Lock())
        got = lock.acquire(blocking=False)
        try:
            yield got
        finally:
            if got:
                lock.release()

    def record_model(
        self, model_name: str, version: str, alias: str, run_id: str, metrics: Mapping[str, float]
    ) -> None:
        self._sql(
            "INSERT INTO model_registry VALUES (?, ?, ?, ?, ?, now()) "
            "ON CONFLICT (model_name, alias) DO UPDATE SET version = excluded.version, "
            "run_id = excluded.run_id, metrics = excluded.metrics, updated_at = now()",
            [model_name, alias, version, run_id, orjson.dumps(dict(metrics)).decode()],
        )

    def _write_decision(self, row: tuple[Any, ...]) -> None:
        self._sql(
            f"INSERT INTO model_decisions ({', '.join(MODEL_DECISION_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(MODEL_DECISION_COLUMNS))}) "
            + self._upsert(("model_name", "version"), MODEL_DECISION_COLUMNS),
            list(row),
        )

    def model_decisions(self, model_name: str | None = None) -> pd.DataFrame:
        cols = [f"{c}::VARCHAR AS {c}" if c == "baselines" else c for c in MODEL_DECISION_COLUMNS]
        df = self._df(
            f"SELECT {', '.join(cols)} FROM model_decisions "
            "WHERE ?::VARCHAR IS NULL OR model_name = ?::VARCHAR "
            "ORDER BY model_name, decided_at, version",
            [model_name, model_name],
        )
        return model_decisions_from_frame(df)

    # ---- reads ---------------------------------------------------------------------------------
    def trades(self, symbols: Sequence[str], start: TimeLike, end: TimeLike) -> pd.DataFrame:
        lo, hi = to_utc(start).value, to_utc(end).value
        df = self._df(
            "SELECT symbol, ts_event, price, size, exchange, trade_id, sequence, conditions, "
            "tape, source, ts_ingest FROM trades "
            "WHERE symbol IN (SELECT unnest(?::VARCHAR[])) AND ts_event >= ? AND ts_event < ? "
            "ORDER BY symbol, ts_event, sequence",
            [list(symbols), lo, hi],
        )
        return frames.finish_trades(df)

    def bars(self, symbols: Sequence[str], start: TimeLike, end: TimeLike) -> pd.DataFrame:
        df = self._df(
            "SELECT symbol, ts, open, high, low, close, volume, vwap, trade_count FROM ohlcv_1m "
            "WHERE symbol IN (SELECT unnest(?::VARCHAR[])) AND ts >= ? AND ts < ? "
            "ORDER BY symbol, ts",
            [list(symbols), _py(to_utc(start)), _py(to_utc(end))],
        )
        return frames.finish_bars(df)

    def bar_sources(self, symbols: Sequence[str], start: TimeLike, end: TimeLike) -> pd.DataFrame:
        df = self._df(
            "SELECT symbol, ts, source FROM ohlcv_1m "
            "WHERE symbol IN (SELECT unnest(?::VARCHAR[])) AND ts >= ? AND ts < ? "
            "ORDER BY symbol, ts",
            [list(symbols), _py(to_utc(start)), _py(to_utc(end))],
        )
        return frames.finish_bar_sources(df)

    def training_frame(
        self,
        symbols: Sequence[str],
        start: TimeLike,
        end: TimeLike,
        as_of: TimeLike,
        feature_set_version: int = 1,
    ) -> pd.DataFrame:
        df = self._df(
            f"SELECT {_FEATURE_SELECT} FROM features "
            "WHERE symbol IN (SELECT unnest(?::VARCHAR[])) AND feature_set_version = ? "
            "AND ts >= ? AND ts < ? AND ts <= ? ORDER BY symbol, ts",
            [
                list(symbols),
                feature_set_version,
                _py(to_utc(start)),
                _py(to_utc(end)),
                _py(to_utc(as_of)),
            ],
        )
        return frames.finish_features(df)

    def latest_features(
        self,
        symbols: Sequence[str],
        feature_set_version: int = 1,
        as_of: TimeLike | None = None,
    ) -> pd.DataFrame:
        cut = _py(to_utc(as_of)) if as_of is not None else None
        df = self._df(
            f"SELECT {_FEATURE_SELECT} FROM features "
            "WHERE symbol IN (SELECT unnest(?::VARCHAR[])) AND feature_set_version = ? "
            "AND (?::TIMESTAMPTZ IS NULL OR ts <= ?::TIMESTAMPTZ) "
            "QUALIFY row_number() OVER (PARTITION BY symbol ORDER BY ts DESC) = 1 "
            "ORDER BY symbol",
            [list(symbols), feature_set_version, cut, cut],
        )
        return frames.finish_features(df)

    def predictions(self, symbols: Sequence[str], start: TimeLike, end: TimeLike) -> pd.DataFrame:
        df = self._df(
            "SELECT symbol, ts, model_name, model_version, value, label, feature_set_version "
            "FROM predictions WHERE symbol IN (SELECT unnest(?::VARCHAR[])) "
            "AND ts >= ? AND ts < ? ORDER BY symbol, ts, model_name, model_version",
            [list(symbols), _py(to_utc(start)), _py(to_utc(end))],
        )
        return frames.finish_predictions(df)

    def drift_results(self, start: TimeLike, end: TimeLike) -> pd.DataFrame:
        df = self._df(
            f"SELECT {', '.join(DRIFT_COLUMNS)} FROM drift WHERE window_end >= ? "
            "AND window_end < ? ORDER BY window_end, feature, feature_set_version",
            [_py(to_utc(start)), _py(to_utc(end))],
        )
        return drift_from_frame(df)

    def dlq(self, limit: int = 1000) -> pd.DataFrame:
        df = self._df(
            "SELECT received_at, source, reason, detail, key, payload FROM dlq "
            "ORDER BY id DESC LIMIT ?",
            [limit],
        )
        df["received_at"] = frames.utc_ns(df["received_at"])
        return df

    def count(self, table: str) -> int:
        if table not in _TABLES:
            raise StoreError(f"unknown table {table!r}")
        return int(self._sql(f"SELECT count(*) FROM {table}")[0][0])

    def coverage(
        self, symbols: Sequence[str], start: dt.date, end: dt.date, kind: GapKind = "bars"
    ) -> pd.DataFrame:
        lo = pd.Timestamp(start).tz_localize("America/New_York").tz_convert("UTC")
        hi = (pd.Timestamp(end) + pd.Timedelta(days=1)).tz_localize("America/New_York")
        hi = hi.tz_convert("UTC")
        if kind == "trades":
            ts_expr = "make_timestamptz(ts_event // 1000)"
            where = "ts_event >= ? AND ts_event < ?"
            params: list[Any] = [lo.value, hi.value]
        else:
            ts_expr, where, params = "ts", "ts >= ? AND ts < ?", [_py(lo), _py(hi)]
        table = "trades" if kind == "trades" else "ohlcv_1m"
        df = self._df(
            f"SELECT symbol, timezone('America/New_York', {ts_expr})::DATE AS session, "
            f"count(*) AS rows, min({ts_expr}) AS first_ts, max({ts_expr}) AS last_ts "
            f"FROM {table} WHERE symbol IN (SELECT unnest(?::VARCHAR[])) AND {where} "
            "GROUP BY ALL ORDER BY symbol, session",
            [list(symbols), *params],
        )
        return _finish_coverage(df)


def _finish_coverage(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "symbol": df["symbol"].astype(object),
            "session": [pd.Timestamp(s).date() for s in df["session"]],
            "rows": df["rows"].astype("int64"),
            "first_ts": frames.utc_ns(df["first_ts"]),
            "last_ts": frames.utc_ns(df["last_ts"]),
        }
    )
    return out.reset_index(drop=True)
