"""Cluster store: TimescaleDB through asyncpg (``STORE_TYPE=timescale``).

The public API is synchronous (the :class:`Store` ABC); an asyncpg pool lives on a private event
loop in a daemon thread, so callers from plain threads and from other event loops are both fine.
Trades go through :class:`~signalstack.store.writer.TradeWriter` (binary COPY, conflict
fallback); the smaller tables use ``INSERT … ON CONFLICT`` from arrays (``unnest``), one
statement per batch. Every operation retries transient connection errors with backoff.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import hashlib
import threading
from collections.abc import (
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, TypeVar

import asyncpg
import numpy as np
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
from signalstack.store.batch import TradeBatch, check_batch
from signalstack.store.migrations import migrate as run_migrations
from signalstack.store.writer import (
    RetryPolicy,
    TradeWriter,
    WriteResult,
    encode_ahead,
    on_connection,
    reset_connection,
    with_retry,
)

T = TypeVar("T")
_TABLES = frozenset({"trades", "ohlcv_1m", "features", "predictions", "anomalies", "dlq", "drift"})
PARALLEL_MIN_ROWS = 20_000  # below this a second COPY costs more than it overlaps
_FEATURES_SQL = ", ".join(["symbol", "ts", *FEATURE_COLUMNS, "feature_set_version"])


class _Loop:
    """An event loop running in a daemon thread; ``run`` blocks the caller until done."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="store-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def _dt(ts: pd.Timestamp) -> dt.datetime:
    return ts.to_pydatetime()


def _col(df: pd.DataFrame, name: str) -> list[Any]:
    """Column as a Python list with NaN/NA → None (asyncpg wants None for NULL)."""
    s = df[name]
    if pd.api.types.is_datetime64_any_dtype(s):
        return [None if pd.isna(v) else v.to_pydatetime() for v in s]
    if pd.api.types.is_float_dtype(s):
        arr = s.to_numpy(dtype=np.float64)
        return [None if np.isnan(v) else float(v) for v in arr]
    return [None if v is None or v is pd.NA else v for v in s.tolist()]


class TimescaleStore(Store):
    # Class 22 (data exception: out of range, bad encoding, NUL in text) and class 23
    # (integrity constraint violation). Deadlocks, serialization failures and lock timeouts
    # are retried by the writer; anything else stops the caller.
    row_errors = (
        *Store.row_errors,
        asyncpg.exceptions.DataError,
        asyncpg.exceptions.IntegrityConstraintViolationError,
    )
    kind = "timescale"

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 4,
        retry: RetryPolicy | None = None,
        batch_rows: int = 100_000,
        chunk_rows: int = 25_000,
        on_retry: Callable[[], None] | None = None,
        synchronous_commit: bool = True,
        write_connections: int = 2,
    ) -> None:
        """``synchronous_commit=False``: the pool's sessions commit without waiting for the
        WAL fsync (PostgreSQL's ``synchronous_commit = off``: no risk of corruption, but a
        crash of the server loses the last few hundred ms of commits). Only for a writer that
        acknowledges by :meth:`durable_position` and rewinds when :attr:`generation` moves,
        as the sink does with its Kafka offsets."""
        self.dsn = dsn
        self.synchronous_commit = synchronous_commit
        self.generation = 0
        self._server_started: object | None = None
        self.retry = retry or RetryPolicy()
        self._loop = _Loop()
        self._pool_size = max(pool_size, write_connections)
        self._write_connections = write_connections
        self._pool: asyncpg.Pool | None = None
        self._batch_rows = batch_rows
        self._chunk_rows = chunk_rows
        self.on_retry = on_retry
        self._writer: TradeWriter | None = None
        self.last_write: WriteResult | None = None

    # ---- plumbing ------------------------------------------------------------------------------
    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:

            async def connect() -> asyncpg.Pool:
                return await asyncpg.create_pool(
                    self.dsn,
                    # Every connection opened up front and never recycled (by age or query
                    # count): after the pool is open, a new connection means one was lost.
                    min_size=self._pool_size,
                    max_size=self._pool_size,
                    max_queries=float("inf"),
                    max_inactive_connection_lifetime=0,
                    command_timeout=300,
                    reset=reset_connection,
                    init=self._init_connection,
                    server_settings=(
                        None if self.synchronous_commit else {"synchronous_commit": "off"}
                    ),
                )

            self._pool, _ = await with_retry(connect, self.retry, "connect")
        return self._pool

    async def _init_connection(self, conn: Any) -> None:
        """Each new connection. Commits acknowledged before their WAL flush may be gone when
        the server restarted (a different postmaster start time) or when it reinitialised
        after a backend crashed, e.g. one killed by the OOM killer: the postmaster then
        terminates every session and runs crash recovery without restarting, so its start time
        stays. The pool never replaces a connection by itself, and asyncpg reopens a closed one
        silently on the next acquire, so any connection opened after the pool is lost."""
        started = await conn.fetchval("SELECT pg_postmaster_start_time()")
        if self._pool is not None or (
            self._server_started is not None and started != self._server_started
        ):
            self._lost()
        self._server_started = started

    def _lost(self) -> None:
        self.generation += 1

    def _run(self, op: Callable[[Any], Awaitable[T]], what: str) -> T:
        """Run ``op(conn)`` on a pooled connection with transient-error retries."""

        async def go() -> T:
            pool = await self._get_pool()

            async def once() -> T:
                return await on_connection(pool, op, self._lost)

            result, _ = await with_retry(once, self.retry, what)
            return result

        return self._loop.run(go())

    def _fetch_df(self, query: str, *args: Any) -> pd.DataFrame:
        async def op(conn: Any) -> pd.DataFrame:
            stmt = await conn.prepare(query)
            rows = await stmt.fetch(*args)
            cols = [a.name for a in stmt.get_attributes()]
            return pd.DataFrame([tuple(r) for r in rows], columns=cols)

        return self._run(op, "read")

    def _execute(self, query: str, *args: Any) -> str:
        async def op(conn: Any) -> str:
            return str(await conn.execute(query, *args))

        return self._run(op, "write")

    # ---- lifecycle -----------------------------------------------------------------------------
    def migrate(self) -> list[str]:
        return run_migrations(self.dsn)

    def license(self) -> str:
        async def op(conn: Any) -> str:
            return str(await conn.fetchval("SELECT current_setting('timescaledb.license')"))

        return self._run(op, "license")

    # ---- durability ----------------------------------------------------------------------------
    def write_position(self) -> int | None:
        """The WAL insert position: past the commit record of every write that has returned."""
        return self._wal_position("pg_current_wal_insert_lsn")

    def durable_position(self) -> int | None:
        """The WAL flush position (the walwriter flushes asynchronous commits within three
        ``wal_writer_delay``, 600 ms by default)."""
        return self._wal_position("pg_current_wal_flush_lsn")

    def _wal_position(self, function: str) -> int | None:
        if self.synchronous_commit:
            return None  # a write is durable when it returns

        async def op(conn: Any) -> int:
            return int(await conn.fetchval(f"SELECT {function}() - '0/0'::pg_lsn"))

        return self._run(op, "wal position")

    def apply_retention(self, now: TimeLike | None = None) -> int:
        """Apache-edition fallback for retention policies: drop chunks older than configured.
        Returns the number of chunks dropped (the Community edition's jobs do this themselves)."""
        cut = _dt(to_utc(now)) if now is not None else dt.datetime.now(dt.UTC)

        async def op(conn: Any) -> int:
            return int(await conn.fetchval("SELECT signalstack_apply_retention($1)", cut))

        return self._run(op, "retention")

    def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                self._loop.run(asyncio.wait_for(pool.close(), 10))
            except Exception:
                pool.terminate()
        self._loop.stop()

    # ---- writes --------------------------------------------------------------------------------
    def write_trades(self, df: pd.DataFrame) -> int:
        """Validate, split off constraint violations (→ DLQ), write idempotently.

        A large frame is pipelined in slices of up to two COPY chunks: slice k+1 is validated
        and encoded in a worker thread while slice k streams to the server, so the client's
        work overlaps the server's instead of preceding it. A large slice is split by symbol
        and its parts are written on ``write_connections`` connections at once: one backend
        inserting into the hypertable's unique index is the limit of a single COPY (~6 µs a
        row), and a second one runs on the other core. Each part is its own idempotent COPY:
        if one fails, the rows of the others stay written, and a retry of the frame skips
        them."""
        step = min(self._batch_rows, 2 * self._chunk_rows)
        if len(df) <= step:
            rejects, parts = self._prepare_slice(df)
            if rejects:
                self.write_dlq(rejects)
            return self._write_parts(parts)
        total = 0
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="trades-prep") as ex:
            nxt = ex.submit(self._prepare_slice, df.iloc[:step])
            for start in range(0, len(df), step):
                rejects, parts = nxt.result()
                if start + step < len(df):
                    nxt = ex.submit(self._prepare_slice, df.iloc[start + step : start + 2 * step])
                if rejects:
                    self.write_dlq(rejects)
                total += self._write_parts(parts)
        return total

    def _prepare_slice(self, df: pd.DataFrame) -> tuple[list[DlqRecord], list[TradeBatch]]:
        typed, rejects = frames.prepare_trades(df)
        batch = TradeBatch.from_typed(typed)
        k = self._write_connections if len(batch) >= PARALLEL_MIN_ROWS else 1
        return rejects, [self.prepare_trade_batch(p) for p in batch.split_by_symbol(k)]

    def _write_parts(self, parts: list[TradeBatch]) -> int:
        if len(parts) == 1:
            return self._write_batch(parts[0])

        async def all_parts() -> int:
            # Every part finishes (or fails) before the call returns: none keeps writing behind
            # a caller that saw another part's error.
            outcomes = await asyncio.gather(
                *(self._write_result(p) for p in parts), return_exceptions=True
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            results = [o for o in outcomes if isinstance(o, WriteResult)]
            self.last_write = WriteResult.total(results, max(r.seconds for r in results))
            return self.last_write.inserted

        return self._loop.run(all_parts())

    def prepare_trade_batch(self, batch: TradeBatch) -> TradeBatch:
        """Encode the COPY tuples ahead (used only if every row passes the constraint split,
        which is the common case; otherwise the accepted subset is re-encoded). A batch that
        cannot be encoded (e.g. an int2[] element out of range) is left as it is: the write
        meets the same error, and the caller's reject handling applies there."""
        try:
            return encode_ahead(batch)
        except (OverflowError, ValueError, UnicodeError):
            return batch

    def write_trade_batch(self, batch: TradeBatch) -> int:
        """Numpy-only path (no DataFrame): constraint split, then the idempotent COPY."""
        ok, rejects = check_batch(batch)
        if rejects:
            self.write_dlq(rejects)
        return self._write_batch(ok)

    def submit_trade_batch(self, batch: TradeBatch) -> concurrent.futures.Future[int]:
        """:meth:`write_trade_batch` without blocking: the constraint split (and its DLQ rows)
        happens now, the COPY on the store's event loop; the future gives the rows inserted,
        or the write's error. The sink uses it to skip a thread hand-off per batch."""
        ok, rejects = check_batch(batch)
        if rejects:
            self.write_dlq(rejects)
        return asyncio.run_coroutine_threadsafe(self._write_async(ok), self._loop.loop)

    async def _write_async(self, batch: TradeBatch) -> int:
        self.last_write = await self._write_result(batch)
        return self.last_write.inserted

    async def _write_result(self, batch: TradeBatch) -> WriteResult:
        pool = await self._get_pool()
        if self._writer is None:
            self._writer = TradeWriter(
                pool,
                batch_rows=self._batch_rows,
                chunk_rows=self._chunk_rows,
                retry=self.retry,
                on_retry=self.on_retry,
                on_lost=self._lost,
            )
        return await self._writer.write(batch)

    def _write_batch(self, batch: TradeBatch) -> int:
        return self._loop.run(self._write_async(batch))

    def _upsert(
        self,
        table: str,
        df: pd.DataFrame,
        types: Mapping[str, str],
        key: Sequence[str],
        where: str = "",
    ) -> int:
        if df.empty:
            return 0
        cols = list(types)
        unnest = ", ".join(f"${i + 1}::{types[c]}[]" for i, c in enumerate(cols))
        sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in key)
        extra = ", written_at = now()" if table in ("features", "predictions", "anomalies") else ""
        extra = ", updated_at = now()" if table == "ohlcv_1m" else extra
        query = (
            f"INSERT INTO {table} ({', '.join(cols)}) SELECT * FROM unnest({unnest}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}{extra}"
            + (f" WHERE {where}" if where else "")
        )
        args = [_col(df, c) for c in cols]

        async def op(conn: Any) -> int:
            return int(str(await conn.execute(query, *args)).rsplit(" ", 1)[-1])

        return self._run(op, f"write {table}")

    def write_bars(self, df: pd.DataFrame) -> int:
        typed = frames.prepare_bars(df)
        types = {
            "symbol": "text",
            "ts": "timestamptz",
            **{c: "float8" for c in ("open", "high", "low", "close", "volume", "vwap")},
            "trade_count": "int8",
            "source": "text",
        }
        return self._upsert("ohlcv_1m", typed, types, ["symbol", "ts"])

    def write_vendor_bars(self, df: pd.DataFrame) -> int:
        typed = frames.prepare_vendor_bars(df)
        types = {
            "symbol": "text",
            "ts": "timestamptz",
            **{c: "float8" for c in ("open", "high", "low", "close", "volume", "vwap")},
            "trade_count": "int8",
            "source": "text",
        }
        return self._upsert(
            "ohlcv_1m", typed, types, ["symbol", "ts"],
            where=frames.vendor_bar_replaces_sql(),
        )  # fmt: skip

    def write_features(self, df: pd.DataFrame) -> int:
        typed = frames.prepare_features(df)
        types = {
            "symbol": "text",
            "ts": "timestamptz",
            **{c: "float8" for c in FEATURE_COLUMNS},
            "feature_set_version": "int2",
        }
        return self._upsert("features", typed, types, ["symbol", "feature_set_version", "ts"])

    def write_predictions(self, df: pd.DataFrame) -> int:
        typed = frames.prepare_predictions(df)
        types = {
            "symbol": "text",
            "ts": "timestamptz",
            "model_name": "text",
            "model_version": "text",
            "value": "float8",
            "label": "text",
            "feature_set_version": "int2",
        }
        key = ["symbol", "model_name", "model_version", "ts"]
        return self._upsert("predictions", typed, types, key)

    def write_anomalies(self, df: pd.DataFrame) -> int:
        typed = frames.prepare_anomalies(df)
        types = {
            "symbol": "text",
            "ts": "timestamptz",
            "model_version": "text",
            "score": "float8",
            "is_anomaly": "bool",
        }
        return self._upsert("anomalies", typed, types, ["symbol", "model_version", "ts"])

    def write_drift(self, df: pd.DataFrame) -> int:
        typed = frames.prepare_drift(df)
        types = {
            "feature": "text",
            "window_start": "timestamptz",
            "window_end": "timestamptz",
            "psi": "float8",
            "reference": "text",
            "feature_set_version": "int2",
        }
        key = ["feature", "feature_set_version", "window_start", "window_end"]
        return self._upsert("drift", typed, types, key)

    def write_dlq(self, records: Iterable[DlqRecord]) -> int:
        recs = list(records)
        if not recs:
            return 0
        cols = dlq_columns(recs)

        async def op(conn: Any) -> int:
            status = await conn.execute(
                f"INSERT INTO dlq ({', '.join(DLQ_COLUMNS)}) "
                "SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], "
                "$5::text[], $6::text[], $7::text[]) ON CONFLICT (dedup_key) DO NOTHING",
                *cols.values(),
            )
            return int(status.rsplit(" ", 1)[1])

        return self._run(op, "write dlq")

    def record_backfill_run(self, run: BackfillRun) -> None:
        cols = BACKFILL_RUN_COLUMNS
        marks = [f"${i}::jsonb" if c in ("options", "stats") else f"${i}"
                 for i, c in enumerate(cols, 1)]  # fmt: skip
        sets = ", ".join(f"{c} = excluded.{c}" for c in BACKFILL_RUN_UPDATES)
        self._execute(
            f"INSERT INTO backfill_runs ({', '.join(cols)}) VALUES ({', '.join(marks)}) "
            f"ON CONFLICT (run_id) DO UPDATE SET {sets}",
            *backfill_run_row(run),
        )

    def backfill_run(self, run_id: str) -> BackfillRun | None:
        cols = [f"{c}::text AS {c}" if c in ("options", "stats") else c
                for c in BACKFILL_RUN_COLUMNS]  # fmt: skip
        df = self._fetch_df(
            f"SELECT {', '.join(cols)} FROM backfill_runs WHERE run_id = $1", run_id
        )
        return None if df.empty else backfill_run_from_row(tuple(df.iloc[0]))

    def record_backfill_ranges(self, ranges: Sequence[BackfillRange]) -> None:
        rows = backfill_range_rows(ranges)
        if not rows:
            return
        cols = ", ".join(BACKFILL_RANGE_COLUMNS)
        sets = ", ".join(f"{c} = excluded.{c}" for c in BACKFILL_RANGE_COLUMNS[2:])
        query = (
            f"INSERT INTO backfill_ranges ({cols}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) "
            f"ON CONFLICT (run_id, seq) DO UPDATE SET {sets}, updated_at = now()"
        )

        async def op(conn: Any) -> None:
            await conn.executemany(query, rows)

        self._run(op, "write")

    def backfill_ranges(self, run_id: str) -> list[BackfillRange]:
        df = self._fetch_df(
            f"SELECT {', '.join(BACKFILL_RANGE_COLUMNS)} FROM backfill_ranges "
            "WHERE run_id = $1 ORDER BY seq",
            run_id,
        )
        return backfill_ranges_from_frame(df)

    def checked_ranges(
        self,
        symbols: Sequence[str],
        start: TimeLike,
        end: TimeLike,
        sources: Sequence[str] | None = None,
    ) -> list[BackfillRange]:
        df = self._fetch_df(
            f"SELECT {', '.join(BACKFILL_RANGE_COLUMNS)} FROM backfill_ranges "
            "WHERE status = 'done' AND symbol = ANY($1::text[]) AND start_ts < $2 "
            "AND end_ts > $3 AND ($4::text[] IS NULL OR run_id IN "
            "(SELECT run_id FROM backfill_runs WHERE source = ANY($4::text[]))) "
            "ORDER BY symbol, start_ts",
            list(symbols),
            _dt(to_utc(end)),
            _dt(to_utc(start)),
            None if sources is None else list(sources),
        )
        return backfill_ranges_from_frame(df)

    @contextlib.contextmanager
    def try_lock(self, name: str) -> Iterator[bool]:
        # A connection of its own (not the pool's): the session advisory lock lives as long as
        # it, and PostgreSQL releases it when the process holding it dies.
        key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), signed=True)
        conn = self._loop.run(asyncpg.connect(self.dsn))
        try:
            got = bool(self._loop.run(conn.fetchval("SELECT pg_try_advisory_lock($1)", key)))
            try:
                yield got
            finally:
                if got:
                    self._loop.run(conn.execute("SELECT pg_advisory_unlock($1)", key))
        finally:
            self._loop.run(conn.close())

    def record_model(
        self, model_name: str, version: str, alias: str, run_id: str, metrics: Mapping[str, float]
    ) -> None:
        self._execute(
            "INSERT INTO model_registry (model_name, alias, version, run_id, metrics) "
            "VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT (model_name, alias) DO UPDATE SET "
            "version = excluded.version, run_id = excluded.run_id, metrics = excluded.metrics, "
            "updated_at = now()",
            model_name,
            alias,
            version,
            run_id,
            orjson.dumps(dict(metrics)).decode(),
        )

    def _write_decision(self, row: tuple[Any, ...]) -> None:
        cols = MODEL_DECISION_COLUMNS
        marks = [f"${i}::jsonb" if c == "baselines" else f"${i}" for i, c in enumerate(cols, 1)]
        sets = ", ".join(f"{c} = excluded.{c}" for c in cols[2:])
        self._execute(
            f"INSERT INTO model_decisions ({', '.join(cols)}) VALUES ({', '.join(marks)}) "
            f"ON CONFLICT (model_name, version) DO UPDATE SET {sets}",
            *row,
        )

    def model_decisions(self, model_name: str | None = None) -> pd.DataFrame:
        cols = [f"{c}::text AS {c}" if c == "baselines" else c for c in MODEL_DECISION_COLUMNS]
        df = self._fetch_df(
            f"SELECT {', '.join(cols)} FROM model_decisions "
            "WHERE $1::text IS NULL OR model_name = $1::text "
            "ORDER BY model_name, decided_at, version",
            model_name,
        )
        return model_decisions_from_frame(df)

    # ---- reads ---------------------------------------------------------------------------------
    def trades(self, symbols: Sequence[str], start: TimeLike, end: TimeLike) -> pd.DataFrame:
        lo, hi = to_utc(start), to_utc(end)
        # ts (µs) bounds prune chunks; ts_event_ns applies the exact nanosecond bounds.
        df = self._fetch_df(
            "SELECT symbol, ts_event_ns AS ts_event, price, size, exchange, trade_id, sequence, "
            "conditions, tape, source, ts_ingest_ns AS ts_ingest FROM trades "
            "WHERE symbol = ANY($1::text[]) AND ts >= $2 AND ts <= $3 "
            "AND ts_event_ns >= $4 AND ts_event_ns < $5 "
            "ORDER BY symbol, ts_event_ns, sequence",
            list(symbols),
            _dt(lo.floor("us")),
            _dt(hi.ceil("us")),
            lo.value,
            hi.value,
        )
        return frames.finish_trades(df)

    def bars(self, symbols: Sequence[str], start: TimeLike, end: TimeLike) -> pd.DataFrame:
        df = self._fetch_df(
            "SELECT symbol, ts, open, high, low, close, volume, vwap, trade_count FROM ohlcv_1m "
            "WHERE symbol = ANY($1::text[]) AND ts >= $2 AND ts < $3 ORDER BY symbol, ts",
            list(symbols),
            _dt(to_utc(start)),
            _dt(to_utc(end)),
        )
        return frames.finish_bars(df)

    def bar_sources(self, symbols: Sequence[str], start: TimeLike, end: TimeLike) -> pd.DataFrame:
        df = self._fetch_df(
            "SELECT symbol, ts, source FROM ohlcv_1m "
            "WHERE symbol = ANY($1::text[]) AND ts >= $2 AND ts < $3 ORDER BY symbol, ts",
            list(symbols),
            _dt(to_utc(start)),
            _dt(to_utc(end)),
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
        df = self._fetch_df(
            f"SELECT {_FEATURES_SQL} FROM features WHERE symbol = ANY($1::text[]) "
            "AND feature_set_version = $2 AND ts >= $3 AND ts < $4 AND ts <= $5 "
            "ORDER BY symbol, ts",
            list(symbols),
            feature_set_version,
            _dt(to_utc(start)),
            _dt(to_utc(end)),
            _dt(to_utc(as_of)),
        )
        return frames.finish_features(df)

    def latest_features(
        self,
        symbols: Sequence[str],
        feature_set_version: int = 1,
        as_of: TimeLike | None = None,
    ) -> pd.DataFrame:
        # One index probe per symbol (LATERAL + ORDER BY ts DESC LIMIT 1) on the primary key.
        cut = _dt(to_utc(as_of)) if as_of is not None else None
        df = self._fetch_df(
            f"SELECT f.* FROM unnest($1::text[]) AS s(sym) CROSS JOIN LATERAL ("
            f"  SELECT {_FEATURES_SQL} FROM features WHERE symbol = s.sym "
            "   AND feature_set_version = $2 AND ($3::timestamptz IS NULL OR ts <= $3) "
            "   ORDER BY ts DESC LIMIT 1) f ORDER BY f.symbol",
            list(symbols),
            feature_set_version,
            cut,
        )
        return frames.finish_features(df)

    def predictions(self, symbols: Sequence[str], start: TimeLike, end: TimeLike) -> pd.DataFrame:
        df = self._fetch_df(
            "SELECT symbol, ts, model_name, model_version, value, label, feature_set_version "
            "FROM predictions WHERE symbol = ANY($1::text[]) AND ts >= $2 AND ts < $3 "
            "ORDER BY symbol, ts, model_name, model_version",
            list(symbols),
            _dt(to_utc(start)),
            _dt(to_utc(end)),
        )
        return frames.finish_predictions(df)

    def drift_results(self, start: TimeLike, end: TimeLike) -> pd.DataFrame:
        df = self._fetch_df(
            f"SELECT {', '.join(DRIFT_COLUMNS)} FROM drift WHERE window_end >= $1 "
            "AND window_end < $2 ORDER BY window_end, feature, feature_set_version",
            _dt(to_utc(start)),
            _dt(to_utc(end)),
        )
        if df.empty:
            df = frames.empty(list(DRIFT_COLUMNS))
        return drift_from_frame(df)

    def dlq(self, limit: int = 1000) -> pd.DataFrame:
        df = self._fetch_df(
            "SELECT received_at, source, reason, detail, key, payload FROM dlq "
            "ORDER BY id DESC LIMIT $1",
            limit,
        )
        if df.empty:
            df = frames.empty(["received_at", "source", "reason", "detail", "key", "payload"])
        df["received_at"] = frames.utc_ns(df["received_at"])
        return df

    def coverage(
        self, symbols: Sequence[str], start: dt.date, end: dt.date, kind: GapKind = "bars"
    ) -> pd.DataFrame:
        lo = pd.Timestamp(start).tz_localize("America/New_York").tz_convert("UTC")
        hi = (pd.Timestamp(end) + pd.Timedelta(days=1)).tz_localize("America/New_York")
        table = "trades" if kind == "trades" else "ohlcv_1m"
        df = self._fetch_df(
            "SELECT symbol, (ts AT TIME ZONE 'America/New_York')::date AS session, "
            f"count(*) AS rows, min(ts) AS first_ts, max(ts) AS last_ts FROM {table} "
            "WHERE symbol = ANY($1::text[]) AND ts >= $2 AND ts < $3 "
            "GROUP BY 1, 2 ORDER BY 1, 2",
            list(symbols),
            _dt(lo),
            _dt(hi.tz_convert("UTC")),
        )
        if df.empty:
            df = frames.empty(["symbol", "session", "rows", "first_ts", "last_ts"])
        return pd.DataFrame(
            {
                "symbol": df["symbol"].astype(object),
                "session": list(df["session"]),
                "rows": df["rows"].astype("int64"),
                "first_ts": frames.utc_ns(df["first_ts"]),
                "last_ts": frames.utc_ns(df["last_ts"]),
            }
        )

    def count(self, table: str) -> int:
        """Row count of a table (tests and operators)."""
        if table not in {
            "trades",
            "ohlcv_1m",
            "features",
            "predictions",
            "anomalies",
            "dlq",
            "drift",
        }:
            raise StoreError(f"unknown table {table!r}")

        async def op(conn: Any) -> int:
            return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))

        return self._run(op, "count")
