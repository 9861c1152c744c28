"""Idempotent trade writer for TimescaleDB (asyncpg, binary COPY).

The common case (fresh trades) is a plain binary COPY straight into ``trades``, streamed in
chunks so the next chunk is encoded (in a worker thread) while the server ingests the previous
one. Idempotency comes from the unique key ``trades_identity``: if any row of the batch already
exists, the COPY fails with a unique violation and its transaction rolls back as a whole; the
batch is then merged through a temporary staging table with ``INSERT … ON CONFLICT DO NOTHING``.
So fresh batches run at raw COPY speed and only replays pay for conflict resolution
(measured in bench/store.py; DESIGN.md explains why staging + ON CONFLICT on every batch cannot
reach the budget).

Failure model: every batch is one transaction. A lost connection (server restart, network)
aborts it; the writer reconnects with exponential backoff and re-sends the same batch. If the
connection died during COMMIT the batch may already be durable: the re-send then meets the
unique violation and takes the merge path, so nothing is lost or duplicated.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import asyncpg

from signalstack.logs import get_logger
from signalstack.store.base import StoreError
from signalstack.store.batch import TradeBatch
from signalstack.store.pgcopy import HEADER, TRAILER, Column, encode
from signalstack.store.tradecopy import ROWS_MAX, TRADE_COPY_COLUMNS, encode_trade_rows

log = get_logger(__name__)
T = TypeVar("T")

_STAGE: Final = "trades_stage"
# The connection (or the server behind it) failed: retry on a fresh connection.
_CONNECTION_LOST: Final = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin/crash shutdown, cannot connect now
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.InterfaceError,  # "connection is closed", "another operation is in progress"
    asyncpg.exceptions.InternalClientError,  # protocol state broken by a drop mid-COPY
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)
# The database gave up on the transaction, not on the rows nor the connection: deadlock,
# serialization failure, lock_timeout, statement_timeout or a cancel. A COPY is idempotent to
# re-run, on the same connection.
_TRANSACTION_ABORTED: Final = (
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.exceptions.LockNotAvailableError,
    asyncpg.exceptions.QueryCanceledError,
)
_TRANSIENT: Final = _CONNECTION_LOST + _TRANSACTION_ABORTED


class WriteAbortedError(StoreError):
    """A batch could not be written within the retry budget; nothing was acknowledged."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial_s: float = 0.05
    max_s: float = 2.0
    deadline_s: float = 120.0


@dataclass(frozen=True, slots=True)
class WriteResult:
    rows: int  # rows in the batch
    inserted: int  # rows newly stored
    path: str  # "copy" (fresh) or "merge" (conflict path)
    attempts: int
    seconds: float

    @staticmethod
    def total(results: Sequence[WriteResult], seconds: float) -> WriteResult:
        """Several writes as one: counts summed, "merge" if any took the conflict path."""
        return WriteResult(
            rows=sum(r.rows for r in results),
            inserted=sum(r.inserted for r in results),
            path="merge" if any(r.path == "merge" for r in results) else "copy",
            attempts=sum(r.attempts for r in results),
            seconds=seconds,
        )


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, _TRANSIENT)


async def with_retry(
    op: Callable[[], Awaitable[T]], policy: RetryPolicy, what: str
) -> tuple[T, int]:
    """Run ``op`` until it succeeds or the deadline passes; retry only transient errors."""
    deadline = time.monotonic() + policy.deadline_s
    delay = policy.initial_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return await op(), attempt
        except Exception as exc:
            if not is_transient(exc) or time.monotonic() + delay > deadline:
                if is_transient(exc):
                    raise WriteAbortedError(
                        f"{what}: gave up after {attempt} attempts: {exc!r}"
                    ) from exc
                raise
            log.warning("store_retry", what=what, attempt=attempt, error=repr(exc), delay_s=delay)
            await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter only
            delay = min(delay * 2, policy.max_s)


async def reset_connection(conn: Any) -> None:
    """Pool reset on release: the stores keep no session state (no LISTEN, advisory locks or
    SET), so only an open transaction needs undoing. asyncpg's default reset costs a server
    round trip on every release, i.e. on every batch."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def on_connection(
    pool: Any, op: Callable[[Any], Awaitable[T]], on_lost: Callable[[], None] | None = None
) -> T:
    """Run ``op(conn)`` on a pooled connection; after a connection failure the connection is
    terminated rather than returned, so a half-dead protocol state is never reused, and
    ``on_lost`` is told (the server may have crashed: see TimescaleStore.generation). An
    aborted transaction (a deadlock, a timeout) leaves the connection usable: it goes back."""
    async with pool.acquire() as conn:
        try:
            return await op(conn)
        except Exception as exc:
            if isinstance(exc, _CONNECTION_LOST):
                conn.terminate()
                if on_lost is not None:
                    on_lost()
            raise


def trade_columns(batch: TradeBatch) -> list[Column]:
    """COPY columns (in ``TRADE_COPY_COLUMNS`` order) for a batch of trades."""
    return [
        Column("ts", "timestamptz_ns", batch.ts_event),
        Column("symbol", "text", batch.symbol),
        Column("exchange", "int2", batch.exchange),
        Column("trade_id", "text", batch.trade_id),
        Column("ts_event_ns", "int8", batch.ts_event),
        Column("price", "float8", batch.price),
        Column("size", "float8", batch.size),
        Column("sequence", "int8", batch.sequence),
        Column("conditions", "int2[]", batch.conditions),
        Column("tape", "int2", batch.tape, null=batch.tape_null),
        Column("source", "text", batch.source),
        Column("ts_ingest_ns", "int8", batch.ts_ingest),
    ]


def _body(batch: TradeBatch) -> bytes:
    """Tuples only (no header/trailer), so chunks can be streamed inside one COPY."""
    if batch.copy_body is not None:
        return batch.copy_body
    if len(batch) <= ROWS_MAX:
        return encode_trade_rows(batch)
    full = encode(trade_columns(batch), len(batch))
    return full[len(HEADER) : len(full) - len(TRAILER)]


async def _stream(batch: TradeBatch, chunk_rows: int) -> AsyncIterator[bytes]:
    """Header, then each chunk; with several chunks, the next is encoded in a worker thread
    while the previous one is sent. A single-chunk batch (the sink's) is encoded inline: the
    executor hop would cost more than it overlaps."""
    if batch.copy_body is not None or len(batch) <= chunk_rows:
        yield HEADER + _body(batch) + TRAILER
        return
    loop = asyncio.get_running_loop()
    yield HEADER
    pending: asyncio.Future[bytes] | None = None
    for s in range(0, len(batch), chunk_rows):
        nxt = loop.run_in_executor(None, _body, batch.take(slice(s, s + chunk_rows)))
        if pending is not None:
            yield await pending
        pending = nxt
    if pending is not None:
        yield await pending
    yield TRAILER


def encode_ahead(batch: TradeBatch) -> TradeBatch:
    """Encode a batch's COPY tuples now (the caller's thread), so the write only sends them."""
    if batch.copy_body is None and len(batch) > 0:
        batch.copy_body = _body(batch)
    return batch


def _copied(status: str) -> int:
    # asyncpg returns the command tag, e.g. "COPY 1000" / "INSERT 0 1000".
    return int(status.rsplit(" ", 1)[-1])


class TradeWriter:
    """Writes trade batches idempotently through an asyncpg pool."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        batch_rows: int = 100_000,
        chunk_rows: int = 25_000,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[], None] | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.pool = pool
        self.batch_rows = batch_rows
        self.chunk_rows = chunk_rows
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self.on_lost = on_lost

    async def write(self, batch: TradeBatch) -> WriteResult:
        """Write all rows (in bounded batches); return totals over the batches."""
        if len(batch) <= self.batch_rows:
            # As it is: a sub-batch made by take() would drop tuples encoded ahead.
            return await self.write_batch(batch)
        t0 = time.perf_counter()
        results = [
            await self.write_batch(batch.take(slice(s, s + self.batch_rows)))
            for s in range(0, len(batch), self.batch_rows)
        ]
        return WriteResult.total(results, time.perf_counter() - t0)

    async def write_batch(self, batch: TradeBatch) -> WriteResult:
        t0 = time.perf_counter()
        if len(batch) == 0:
            return WriteResult(0, 0, "copy", 0, 0.0)
        state = {"path": "copy"}

        async def on_conn(conn: Any) -> int:
            if state["path"] == "copy":
                try:
                    return await self._copy(conn, batch)
                except asyncpg.UniqueViolationError:
                    state["path"] = "merge"
            return await self._merge(conn, batch)

        async def attempt() -> int:
            return await on_connection(self.pool, on_conn, self.on_lost)

        n, attempts = await with_retry(attempt, self.retry, "write trades")
        if attempts > 1 and self.on_retry is not None:
            for _ in range(attempts - 1):
                self.on_retry()
        return WriteResult(len(batch), n, state["path"], attempts, time.perf_counter() - t0)

    async def _copy(self, conn: Any, batch: TradeBatch) -> int:
        # One COPY statement outside a transaction block is its own transaction: atomic, and
        # durable when its CommandComplete arrives (synchronous_commit). No BEGIN/COMMIT round
        # trips; a unique violation rolls the whole statement back as before.
        status = await conn.copy_to_table(
            "trades",
            source=_stream(batch, self.chunk_rows),
            columns=list(TRADE_COPY_COLUMNS),
            format="binary",
        )
        return _copied(status)

    async def _merge(self, conn: Any, batch: TradeBatch) -> int:
        cols = ", ".join(TRADE_COPY_COLUMNS)
        async with conn.transaction():
            await conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} "
                f"(LIKE trades INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            await conn.copy_to_table(
                _STAGE,
                source=_stream(batch, self.chunk_rows),
                columns=list(TRADE_COPY_COLUMNS),
                format="binary",
            )
            status = await conn.execute(
                f"INSERT INTO trades ({cols}) SELECT {cols} FROM {_STAGE} ON CONFLICT DO NOTHING"
            )
        return _copied(status)
