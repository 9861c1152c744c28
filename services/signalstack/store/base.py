"""The store interface: one ABC, two implementations (DuckDB embedded, TimescaleDB cluster).

Every consumer (sink, stream engines, training, serving, backfill, dashboards) talks to a
:class:`Store`; :func:`open_store` picks the implementation from ``STORE_TYPE``. The API is
synchronous; the TimescaleDB implementation runs asyncpg on a private event loop.

Frame conventions (DataFrames in and out):

- trades: ``symbol`` str, ``ts_event`` int64 ns UTC, ``price``/``size`` float64, ``exchange``
  int64, ``trade_id`` str, ``sequence`` int64, ``conditions`` object (list of int), ``tape``
  nullable Int64, ``source`` str, ``ts_ingest`` int64 ns (rows of ``TradeEvent.to_dict()``).
- bars (``ohlcv_1m``): ``symbol``, ``ts`` datetime64[ns, UTC] (the bar END), ``open``, ``high``,
  ``low``, ``close``, ``volume``, ``vwap`` float64, ``trade_count`` int64.
- features: ``symbol``, ``ts`` datetime64[ns, UTC] (the bar end at which the row became
  knowable), one float64 column per feature (NaN = NULL), ``feature_set_version`` int.
- predictions: ``symbol``, ``ts``, ``model_name`` str, ``model_version`` str, ``value`` float64,
  ``label`` str or None, ``feature_set_version`` int.
- anomalies: ``symbol``, ``ts``, ``model_version`` str, ``score`` float64, ``is_anomaly`` bool.

Time ranges are half-open, ``start <= ts < end``; point-in-time cuts are inclusive,
``ts <= as_of``. Naive datetimes are read as UTC.

Writes are idempotent: the same rows written twice leave one copy (trades: first write wins;
bars, features, predictions: the last write replaces the row with the same key).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from signalstack.errors import SignalStackError

# The frame contracts are the feature library's; re-exported for store users.
from signalstack.features.columns import BAR_COLUMNS as BAR_COLUMNS
from signalstack.features.columns import FEATURE_COLUMNS as FEATURE_COLUMNS
from signalstack.features.columns import TRADE_COLUMNS as TRADE_COLUMNS

if TYPE_CHECKING:
    from signalstack.config import Settings
    from signalstack.store.batch import TradeBatch

PREDICTION_COLUMNS: Final = (
    "symbol",
    "ts",
    "model_name",
    "model_version",
    "value",
    "label",
    "feature_set_version",
)
ANOMALY_COLUMNS: Final = ("symbol", "ts", "model_version", "score", "is_anomaly")
DRIFT_COLUMNS: Final = (
    "feature",
    "window_start",
    "window_end",
    "psi",
    "reference",
    "feature_set_version",
)

TimeLike = dt.datetime | pd.Timestamp | str | int
GapKind = Literal["trades", "bars"]


class StoreError(SignalStackError):
    """A store operation failed (connection, schema, bad input)."""


class SchemaMismatchError(StoreError):
    """A frame handed to a write method lacks required columns."""

    http_status = 400


NUL_ESCAPE = "\\u0000"  # how a DLQ record keeps a NUL character (see DlqRecord)


def text_has_nul(values: Iterable[Any]) -> npt.NDArray[np.bool_]:
    """Rows whose text holds a NUL character, which PostgreSQL text cannot store (and binary
    encodings drop when it trails). One join scans the whole column in C; only a column that
    has one (or non-text values) is looked at row by row."""
    vals = values.tolist() if isinstance(values, np.ndarray | pd.Series) else list(values)
    try:
        if "\x00" not in "".join(vals):
            return np.zeros(len(vals), dtype=bool)
    except TypeError:  # a NULL or non-text value: the other checks name it
        pass
    return np.fromiter((isinstance(v, str) and "\x00" in v for v in vals), bool, len(vals))


@dataclass(frozen=True, slots=True)
class DlqRecord:
    """A rejected input: where it came from, why, and the raw payload (verbatim but for NUL)."""

    source: str  # e.g. "market.trades" or "sink.trades"
    reason: str  # a RejectReason value or a database constraint name
    payload: str  # the raw message (or the row as JSON)
    detail: str = ""
    key: str | None = None
    received_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    # where the input sits, e.g. "kafka:market.trades:2:1041@1732493021123" (topic, partition,
    # offset, and the message's timestamp: a recreated topic reuses offsets, not timestamps)
    origin: str | None = None
    _digest: str = field(default="", init=False, repr=False, compare=False)

    @property
    def dedup_key(self) -> str:
        """What makes a replayed reject the same reject: who rejected it and its origin when it
        has one (each Kafka message is rejected once per consumer, however often it is
        replayed; two messages with equal bytes stay two rejects), otherwise its content (a
        row refused on every replay)."""
        if self.origin is not None:
            return f"{self.source}@{self.origin}"
        return f"content:{self._digest}"

    def __post_init__(self) -> None:
        if self.origin is None:  # digest the content as received, before any escaping
            h = hashlib.blake2b(digest_size=16)
            for part in (self.source, self.reason, self.key, self.payload):
                b = b"\xff" if part is None else part.encode("utf-8", "surrogatepass")
                h.update(len(b).to_bytes(8, "little"))
                h.update(b)
            object.__setattr__(self, "_digest", h.hexdigest())
        # PostgreSQL text cannot hold NUL: a payload with one (a binary value, a symbol with
        # "\u0000") would make the DLQ insert itself fail, forever, on every replay. NUL is
        # kept as the six characters \u0000 (its JSON escape), on every store alike.
        for name in ("source", "reason", "payload", "detail", "key", "origin"):
            value = getattr(self, name)
            if value is not None and "\x00" in value:
                object.__setattr__(self, name, value.replace("\x00", NUL_ESCAPE))


# The dlq table's written columns, in the order both stores insert them.
DLQ_COLUMNS: Final = ("received_at", "source", "reason", "detail", "key", "payload", "dedup_key")


def dlq_columns(records: Sequence[DlqRecord]) -> dict[str, list[Any]]:
    """Records → one list per :data:`DLQ_COLUMNS` entry (what both stores' inserts take)."""
    return {c: [getattr(r, c) for r in records] for c in DLQ_COLUMNS}


@dataclass(frozen=True, slots=True)
class BackfillRun:
    run_id: str
    source: str
    symbols: tuple[str, ...]
    start: dt.date
    end: dt.date
    status: str  # "running" | "ok" | "failed"
    rows: int = 0
    error: str = ""
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    finished_at: dt.datetime | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # what --resume carries on with
    stats: Mapping[str, int] = field(default_factory=dict)  # counters (API calls, retries, ...)


BACKFILL_RUN_COLUMNS: Final = (
    "run_id", "source", "symbols", "start_date", "end_date", "status", "rows", "error",
    "started_at", "finished_at", "options", "stats",
)  # fmt: skip
# on a run recorded again: what changes (a resume keeps its options and start)
BACKFILL_RUN_UPDATES: Final = ("status", "rows", "error", "finished_at", "stats")


def backfill_run_row(run: BackfillRun) -> tuple[Any, ...]:
    """A run → a row in :data:`BACKFILL_RUN_COLUMNS` order (options and stats as JSON text)."""
    return (
        run.run_id, run.source, list(run.symbols), run.start, run.end, run.status, run.rows,
        run.error, run.started_at, run.finished_at, orjson.dumps(dict(run.options)).decode(),
        orjson.dumps(dict(run.stats)).decode(),
    )  # fmt: skip


def backfill_run_from_row(row: Sequence[Any]) -> BackfillRun:
    """A row read back (:data:`BACKFILL_RUN_COLUMNS`, JSON as text) → a run."""
    v = dict(zip(BACKFILL_RUN_COLUMNS, row, strict=True))
    finished = v["finished_at"]
    return BackfillRun(
        run_id=str(v["run_id"]), source=str(v["source"]), symbols=tuple(v["symbols"]),
        start=v["start_date"], end=v["end_date"], status=str(v["status"]), rows=int(v["rows"]),
        error=str(v["error"]), started_at=v["started_at"],
        finished_at=None if finished is None or pd.isna(finished) else finished,
        options=orjson.loads(v["options"] or "{}"), stats=orjson.loads(v["stats"] or "{}"),
    )  # fmt: skip


BackfillRangeStatus = Literal["pending", "fetched", "done", "failed"]


@dataclass(frozen=True, slots=True)
class BackfillRange:
    """One range a backfill run fetches: trade time ``start <= ts_event < end`` of a symbol.

    ``pending`` → ``fetched`` (every trade stored) → ``done`` (bars and features written);
    ``failed`` when the source refused it. ``cursor_ns``: the newest ts_event stored, where a
    resumed fetch restarts. A ``done`` range is checked: gap detection skips its minutes."""

    run_id: str
    seq: int
    symbol: str
    start: pd.Timestamp
    end: pd.Timestamp
    status: BackfillRangeStatus = "pending"
    cursor_ns: int | None = None
    trades: int = 0  # trades the source returned (pages re-read on resume count again)
    stored: int = 0  # trades newly stored


BACKFILL_RANGE_COLUMNS: Final = (
    "run_id", "seq", "symbol", "start_ts", "end_ts", "status", "cursor_ns", "trades", "stored",
)  # fmt: skip


def backfill_range_rows(ranges: Iterable[BackfillRange]) -> list[tuple[Any, ...]]:
    """Ranges → rows in :data:`BACKFILL_RANGE_COLUMNS` order (what both stores insert)."""
    return [
        (r.run_id, r.seq, r.symbol, r.start.to_pydatetime(), r.end.to_pydatetime(), r.status,
         r.cursor_ns, r.trades, r.stored)
        for r in ranges
    ]  # fmt: skip


def backfill_ranges_from_frame(df: pd.DataFrame) -> list[BackfillRange]:
    """Rows read back (columns :data:`BACKFILL_RANGE_COLUMNS`) → ranges."""
    return [
        BackfillRange(
            run_id=str(r["run_id"]),
            seq=int(r["seq"]),
            symbol=str(r["symbol"]),
            start=to_utc(r["start_ts"]),
            end=to_utc(r["end_ts"]),
            status=r["status"],
            cursor_ns=None if pd.isna(r["cursor_ns"]) else int(r["cursor_ns"]),
            trades=int(r["trades"]),
            stored=int(r["stored"]),
        )
        for r in df.to_dict("records")
    ]


ModelDecisionKind = Literal["promoted", "refused"]

# model_decisions: one row per (model_name, version), the champion gate's decision on it.
MODEL_DECISION_COLUMNS: Final = (
    "model_name", "version", "run_id", "decision", "reason", "metric", "candidate_value",
    "champion_version", "champion_value", "baselines", "margin", "decided_at",
)  # fmt: skip


def model_decision_row(
    model_name: str,
    version: str,
    run_id: str,
    decision: ModelDecisionKind,
    reason: str,
    metric: str,
    candidate_value: float | None,
    baselines: Mapping[str, float],
    margin: float,
    champion_version: str | None = None,
    champion_value: float | None = None,
    decided_at: TimeLike | None = None,
) -> tuple[Any, ...]:
    """One decision → a row in :data:`MODEL_DECISION_COLUMNS` order (baselines as JSON text,
    NaN values as NULL, ``decided_at`` now when not given)."""
    if decision not in ("promoted", "refused"):
        raise StoreError(f"decision must be 'promoted' or 'refused', got {decision!r}")

    def num(v: float | None) -> float | None:
        return None if v is None or np.isnan(v) else float(v)

    when = dt.datetime.now(dt.UTC) if decided_at is None else to_utc(decided_at).to_pydatetime()
    clean = {str(k): num(v) for k, v in baselines.items()}  # JSON has no NaN: null
    return (
        model_name, str(version), run_id, decision, reason, metric, num(candidate_value),
        champion_version, num(champion_value), orjson.dumps(clean).decode(), float(margin), when,
    )  # fmt: skip


def model_decisions_from_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Rows read back (columns :data:`MODEL_DECISION_COLUMNS`, baselines as JSON text) → the
    frame :meth:`Store.model_decisions` returns: baselines a dict, values float64 (NaN for
    NULL), ``decided_at`` datetime64[ns, UTC]."""
    if df.empty:
        df = pd.DataFrame({c: pd.Series(dtype=object) for c in MODEL_DECISION_COLUMNS})
    out = pd.DataFrame({c: df[c].astype(object) for c in MODEL_DECISION_COLUMNS})
    for c in ("candidate_value", "champion_value", "margin"):
        out[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    out["champion_version"] = [None if v is None or pd.isna(v) else str(v)
                               for v in df["champion_version"]]  # fmt: skip
    out["baselines"] = pd.Series(
        [{k: (np.nan if v is None else float(v)) for k, v in orjson.loads(b or "{}").items()}
         for b in df["baselines"]],
        index=out.index,
        dtype=object,
    )  # fmt: skip
    out["decided_at"] = pd.to_datetime(df["decided_at"], utc=True).astype("datetime64[ns, UTC]")
    return out.reset_index(drop=True)


def drift_from_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Drift rows read back → :data:`DRIFT_COLUMNS`: windows datetime64[ns, UTC], ``psi``
    float64, ``feature_set_version`` int64 (an empty frame keeps these dtypes)."""
    out = pd.DataFrame(
        {
            "feature": df["feature"].astype(object) if len(df) else pd.Series(dtype=object),
            "window_start": pd.to_datetime(df["window_start"], utc=True),
            "window_end": pd.to_datetime(df["window_end"], utc=True),
            "psi": pd.to_numeric(df["psi"]).astype("float64"),
            "reference": df["reference"].astype(object),
            "feature_set_version": pd.to_numeric(df["feature_set_version"]).astype("int64"),
        }
    )
    for c in ("window_start", "window_end"):
        out[c] = out[c].astype("datetime64[ns, UTC]")
    return out.reset_index(drop=True)


def to_utc(value: TimeLike) -> pd.Timestamp:
    """Any time-like (datetime, Timestamp, ISO string, int ns) → tz-aware UTC Timestamp."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def require_columns(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SchemaMismatchError(f"{what} frame lacks columns: {', '.join(missing)}")


class Store(ABC):
    """Read/write interface shared by the embedded (DuckDB) and cluster (TimescaleDB) stores."""

    kind: str = "abstract"

    # ---- lifecycle ---------------------------------------------------------------------------
    @abstractmethod
    def migrate(self) -> list[str]:
        """Create or upgrade the schema (idempotent); return the ids of migrations applied now."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- writes (idempotent; return rows newly stored or replaced) ---------------------------
    @abstractmethod
    def write_trades(self, df: pd.DataFrame) -> int:
        """Insert trades; rows whose (symbol, exchange, trade_id, ts_event) exists are skipped.
        Returns the number of rows newly inserted."""

    def prepare_trade_batch(self, batch: TradeBatch) -> TradeBatch:
        """CPU-only work for a later :meth:`write_trade_batch` that a caller may run ahead,
        e.g. while the previous batch is being written. Default: nothing."""
        return batch

    def write_trade_batch(self, batch: TradeBatch) -> int:
        """:meth:`write_trades` for columns (the sink's hot path); stores with a faster path
        than a DataFrame override it."""
        return self.write_trades(batch.to_frame())

    # ---- durability (for writers that acknowledge before the flush, e.g. the sink) -----------
    # A store whose writes are durable when they return (the default) answers None: there is
    # nothing to wait for. One that commits asynchronously answers positions in its log.
    generation: int = 0  # moves when acknowledged-but-unflushed writes may have been lost

    # Errors that are about the rows (a value the column cannot hold, a constraint), as opposed
    # to the database (a deadlock, a timeout, a missing privilege): only these make a caller
    # split a batch and send the refused rows to the DLQ. Client-side: a value that does not
    # fit its binary encoding, a frame that cannot be converted to the schema.
    row_errors: tuple[type[BaseException], ...] = (ValueError, OverflowError)

    def is_row_error(self, exc: BaseException) -> bool:
        return isinstance(exc, self.row_errors)

    def write_position(self) -> int | None:
        """The log position covering every write that has returned so far."""
        return None

    def durable_position(self) -> int | None:
        """The log position up to which writes are durable."""
        return None

    def wait_durable(self, position: int | None, timeout_s: float) -> bool:
        """Block until ``position`` is durable; False if ``timeout_s`` passed first."""
        if position is None:
            return True
        deadline = time.monotonic() + timeout_s
        while True:
            durable = self.durable_position()
            if durable is None or durable >= position:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    @abstractmethod
    def write_bars(self, df: pd.DataFrame) -> int:
        """Upsert 1-minute bars on (symbol, ts). Returns rows written."""

    @abstractmethod
    def write_vendor_bars(self, df: pd.DataFrame) -> int:
        """Upsert vendor 1-minute bars (``source`` ``polygon_aggs`` or ``yfinance``) on
        (symbol, ts), never over a better-ranked bar (:data:`frames.BAR_SOURCE_RANK`: the
        engine's bars from trades, then Polygon's aggregates, then Yahoo's). Returns rows
        written (inserted or replacing a bar of the same rank or worse)."""

    @abstractmethod
    def write_features(self, df: pd.DataFrame) -> int:
        """Upsert feature rows on (symbol, ts, feature_set_version). Returns rows written."""

    @abstractmethod
    def write_predictions(self, df: pd.DataFrame) -> int:
        """Upsert predictions on (symbol, ts, model_name, model_version)."""

    @abstractmethod
    def write_anomalies(self, df: pd.DataFrame) -> int:
        """Upsert anomaly scores on (symbol, ts, model_version)."""

    @abstractmethod
    def write_drift(self, df: pd.DataFrame) -> int:
        """Upsert PSI rows on (feature, window_start, window_end, feature_set_version)."""

    @abstractmethod
    def write_dlq(self, records: Iterable[DlqRecord]) -> int:
        """Append rejected inputs with their reason, once per :attr:`DlqRecord.dedup_key`: a
        replayed reject is not appended again. Returns rows appended."""

    @abstractmethod
    def record_backfill_run(self, run: BackfillRun) -> None:
        """Insert or update (by run_id) one backfill run."""

    @abstractmethod
    def backfill_run(self, run_id: str) -> BackfillRun | None:
        """The recorded run, or None."""

    @abstractmethod
    def record_backfill_ranges(self, ranges: Sequence[BackfillRange]) -> None:
        """Insert or update (by run_id, seq) ranges of a backfill run."""

    @abstractmethod
    def backfill_ranges(self, run_id: str) -> list[BackfillRange]:
        """The ranges of one run, by seq."""

    @abstractmethod
    def checked_ranges(
        self,
        symbols: Sequence[str],
        start: TimeLike,
        end: TimeLike,
        sources: Sequence[str] | None = None,
    ) -> list[BackfillRange]:
        """The ``done`` ranges overlapping ``start <= ts < end`` for these symbols, of any run
        or (``sources``) of the runs whose ``backfill_runs.source`` is one of these."""

    @abstractmethod
    def try_lock(self, name: str) -> AbstractContextManager[bool]:
        """A named lock across every process using this store, not waiting: the context yields
        True when this caller holds it (released on exit, or when the process dies) and False
        when another holder has it. TimescaleDB: a session advisory lock."""

    @abstractmethod
    def record_model(
        self, model_name: str, version: str, alias: str, run_id: str, metrics: Mapping[str, float]
    ) -> None:
        """Mirror an MLflow model version in use (upsert on model_name, alias)."""

    def record_decision(
        self,
        model_name: str,
        version: str,
        run_id: str,
        decision: ModelDecisionKind,
        reason: str,
        metric: str,
        candidate_value: float | None,
        baselines: Mapping[str, float],
        margin: float,
        champion_version: str | None = None,
        champion_value: float | None = None,
        decided_at: TimeLike | None = None,
    ) -> None:
        """Record the champion gate's decision on one model version (``promoted`` or
        ``refused``, its reason and figures) in ``model_decisions``; deciding on the same
        (model_name, version) again replaces the row. ``decided_at`` defaults to now."""
        self._write_decision(
            model_decision_row(
                model_name, version, run_id, decision, reason, metric, candidate_value,
                baselines, margin, champion_version, champion_value, decided_at,
            )
        )  # fmt: skip

    @abstractmethod
    def _write_decision(self, row: tuple[Any, ...]) -> None:
        """Upsert one :func:`model_decision_row` on (model_name, version): the store's SQL."""

    @abstractmethod
    def model_decisions(self, model_name: str | None = None) -> pd.DataFrame:
        """The recorded decisions (all models, or one), columns :data:`MODEL_DECISION_COLUMNS`
        (``baselines`` a dict), ordered by (model_name, decided_at, version)."""

    # ---- reads ---------------------------------------------------------------------------------
    @abstractmethod
    def trades(self, symbols: Sequence[str], start: TimeLike, end: TimeLike) -> pd.DataFrame:
        """Trades with start <= ts_event < end, ordered by (symbol, ts_event, sequence)."""

    @abstractmethod
    def bars(self, symbols: Sequence[str], start: TimeLike, end: TimeLike) -> pd.DataFrame:
        """1-minute bars with start <= ts < end, ordered by (symbol, ts)."""

    @abstractmethod
    def bar_sources(self, symbols: Sequence[str], start: TimeLike, end: TimeLike) -> pd.DataFrame:
        """``symbol, ts, source`` of the 1-minute bars with start <= ts < end (``trades``: the
        engine's; else the vendor's), ordered by (symbol, ts)."""

    @abstractmethod
    def training_frame(
        self,
        symbols: Sequence[str],
        start: TimeLike,
        end: TimeLike,
        as_of: TimeLike,
        feature_set_version: int = 1,
    ) -> pd.DataFrame:
        """Point-in-time feature frame: start <= ts < end AND ts <= as_of, never later.
        Ordered by (symbol, ts)."""

    @abstractmethod
    def latest_features(
        self,
        symbols: Sequence[str],
        feature_set_version: int = 1,
        as_of: TimeLike | None = None,
    ) -> pd.DataFrame:
        """The newest feature row per symbol (ts <= as_of when given); absent symbols omitted."""

    def session_features(
        self,
        symbol: str,
        limit: int,
        feature_set_version: int = 1,
        as_of: TimeLike | None = None,
    ) -> pd.DataFrame:
        """The newest ``limit`` feature rows of ``symbol``'s latest session with a row at or
        before ``as_of`` (no cut when None), oldest first: what a model predicting the symbol's
        latest row reads (the LSTM its last ``sequence_length``). Never a row of an earlier
        session (the session is the New York calendar date of the newest row: a trading session
        never crosses midnight there) nor one stamped after ``as_of``. Empty when the symbol
        has no such row. Composed of :meth:`latest_features` and :meth:`training_frame`, so
        both stores answer alike."""
        if limit < 1:
            raise StoreError(f"limit must be at least 1, got {limit}")
        last = self.latest_features([symbol], feature_set_version, as_of)
        if last.empty or limit == 1:
            return last.reset_index(drop=True)
        newest = to_utc(last["ts"].iloc[0])
        midnight = newest.tz_convert("America/New_York").normalize().tz_convert("UTC")
        # the end bound only has to lie after the newest row (drivers keep microseconds);
        # the as_of cut at the newest row is what bounds the read
        rows = self.training_frame(
            [symbol], midnight, newest + pd.Timedelta(minutes=1), newest, feature_set_version
        )
        return rows.tail(limit).reset_index(drop=True)

    @abstractmethod
    def predictions(self, symbols: Sequence[str], start: TimeLike, end: TimeLike) -> pd.DataFrame:
        """Predictions with start <= ts < end."""

    @abstractmethod
    def drift_results(self, start: TimeLike, end: TimeLike) -> pd.DataFrame:
        """PSI rows whose window ends in ``start <= window_end < end``, columns
        :data:`DRIFT_COLUMNS`, ordered by (window_end, feature, feature_set_version)."""

    @abstractmethod
    def dlq(self, limit: int = 1000) -> pd.DataFrame:
        """The newest DLQ rows: received_at, source, reason, detail, key, payload."""

    @abstractmethod
    def count(self, table: str) -> int:
        """Row count of one of the store's tables (operators, tests)."""

    @abstractmethod
    def coverage(
        self, symbols: Sequence[str], start: dt.date, end: dt.date, kind: GapKind = "bars"
    ) -> pd.DataFrame:
        """Rows per (symbol, session) for sessions start..end inclusive, the session being the
        America/New_York date of the row. Columns: symbol, session (datetime.date), rows,
        first_ts, last_ts. Only (symbol, session) pairs with rows appear."""

    # ---- gap queries (shared logic over coverage/bars) ----------------------------------------
    def missing_sessions(
        self,
        symbols: Sequence[str],
        start: dt.date,
        end: dt.date,
        kind: GapKind = "bars",
        calendar: str = "XNYS",
    ) -> pd.DataFrame:
        """(symbol, session) pairs of trading sessions in start..end with no rows of ``kind``."""
        from signalstack.store.gaps import missing_sessions

        cov = self.coverage(symbols, start, end, kind)
        return missing_sessions(cov, symbols, start, end, calendar)

    def missing_minutes(
        self,
        symbol: str,
        session: dt.date,
        calendar: str = "XNYS",
        extended_hours: bool = False,
    ) -> list[pd.Timestamp]:
        """Bar ends (UTC) of the session's minutes that have no bar in ohlcv_1m.

        A minute without last-eligible trades legitimately has no bar, so this is a candidate
        list for backfill to check against the source, not proof of loss."""
        from signalstack.store.gaps import missing_minutes, session_bounds

        open_, close = session_bounds(session, calendar, extended_hours)
        have = self.bars([symbol], open_, close + pd.Timedelta(minutes=1))
        return missing_minutes(have["ts"], open_, close)


def open_store(
    settings: Settings, *, migrate: bool = True, synchronous_commit: bool = True
) -> Store:
    """The store selected by ``STORE_TYPE`` (``duckdb`` default, or ``timescale``).
    ``synchronous_commit=False`` (TimescaleDB): writes return before their WAL is flushed;
    only for a writer that gates its acknowledgements on :meth:`Store.durable_position`."""
    kind = settings.store.type
    store: Store
    if kind == "duckdb":
        from signalstack.store.duckdb import DuckDBStore

        store = DuckDBStore(settings.store.duckdb_path)
    elif kind == "timescale":
        from signalstack.store.timescale import TimescaleStore

        store = TimescaleStore(settings.timescale.dsn(), synchronous_commit=synchronous_commit)
    else:  # pragma: no cover - the config Literal rejects it first
        raise StoreError(f"unknown STORE_TYPE {kind!r}")
    if migrate:
        store.migrate()
    return store


def as_records(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Convenience: list of dicts (e.g. ``TradeEvent.to_dict()``) → DataFrame."""
    return pd.DataFrame.from_records(list(rows))
