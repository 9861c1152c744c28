"""Frame checks and dtype normalisation shared by both stores (pure pandas, no I/O).

Writes: ``prepare_*`` select and type the columns a table needs, and split off rows that would
violate a constraint (they go to the DLQ with the constraint's name instead of failing a batch).
Reads: ``finish_*`` give every store's output the same dtypes, so contract tests compare frames
from DuckDB and TimescaleDB directly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import orjson
import pandas as pd

from signalstack.store.base import (
    ANOMALY_COLUMNS,
    BAR_COLUMNS,
    DRIFT_COLUMNS,
    FEATURE_COLUMNS,
    PREDICTION_COLUMNS,
    TRADE_COLUMNS,
    DlqRecord,
    require_columns,
    text_has_nul,
)
from signalstack.store.batch import TRADE_DLQ_SOURCE, first_failures

UTC_NS: Final = "datetime64[ns, UTC]"


def utc_ns(col: pd.Series) -> pd.Series:
    """Any datetime-ish column → datetime64[ns, UTC] (naive values read as UTC)."""
    s = pd.to_datetime(col, utc=True)
    return s.astype(UTC_NS)


def key_ts(col: pd.Series) -> pd.Series:
    """:func:`utc_ns` cut to the microsecond: what both stores keep of a key time
    (timestamptz, DuckDB TIMESTAMPTZ). Two rows 1 ns apart are one row to the database, so the
    batch de-duplication must see them as one too."""
    floored: pd.Series = utc_ns(col).dt.floor("us")
    return floored


def _types_refused(
    fn: Callable[[pd.DataFrame], pd.DataFrame],
) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """A value of the wrong type (a list, a dict, None where a number goes) is a refused row,
    like any other bad value: ValueError, which the sink bisects to the DLQ, not a TypeError
    that would stop it."""

    @functools.wraps(fn)
    def wrapper(df: pd.DataFrame) -> pd.DataFrame:
        try:
            return fn(df)
        except TypeError as e:
            raise ValueError(f"{fn.__name__}: {e}") from e

    return wrapper


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)


def _text_key(col: pd.Series, name: str, ints: bool = False) -> pd.Series:
    """A key column of non-empty strings without NUL (``ints``: integers are taken as their
    digits). A column of str objects is checked in C; anything else value by value."""
    if not (col.dtype == object and pd.api.types.infer_dtype(col, skipna=False) == "string"):
        if ints:
            col = col.map(lambda v: str(v) if _is_int(v) else v)
        ok = col.map(lambda v: isinstance(v, str) and v != "").to_numpy(dtype=bool)
        if not ok.all():
            raise ValueError(f"{name} must be a non-empty string, got {col[~ok].iloc[0]!r}")
        col = col.astype(object)
    elif (col.to_numpy() == "").any():
        raise ValueError(f"{name} must be a non-empty string, got ''")
    nul = text_has_nul(col)
    if nul.any():
        raise ValueError(f"{name} contains NUL (0x00), got {col[nul].iloc[0]!r}")
    return col


def _numbers(col: pd.Series, name: str) -> pd.Series:
    """Numbers (NULL as NaN); anything else is refused with the column's name."""
    try:
        nums: pd.Series = pd.to_numeric(col, errors="raise")
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: {e}") from e
    return nums


def _int_col(col: pd.Series, name: str) -> pd.Series:
    nums = _numbers(col, name)
    if pd.api.types.is_integer_dtype(nums.dtype) and not nums.isna().any():
        return nums.astype("int64")
    a = nums.to_numpy(dtype="float64", na_value=np.nan)
    bad = np.isnan(a) | (a != np.floor(a))
    if bad.any():
        raise ValueError(f"{name} must be an integer, got {col[bad].iloc[0]!r}")
    return pd.Series(a.astype("int64"), index=col.index)


def _row_json(row: pd.Series) -> str:
    def conv(v: Any) -> Any:
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, np.ndarray):
            return v.tolist()
        if v is pd.NA or (isinstance(v, float) and np.isnan(v)):
            return None
        return v

    return orjson.dumps({k: conv(v) for k, v in row.items()}, default=str).decode()


def _as_list(c: Any) -> Any:
    return c if isinstance(c, (list, tuple, np.ndarray)) else []


def prepare_trades(df: pd.DataFrame) -> tuple[pd.DataFrame, list[DlqRecord]]:
    """Typed trade rows ready to write, plus DLQ records for rows violating a constraint."""
    require_columns(df, [c for c in TRADE_COLUMNS if c not in ("conditions", "tape")], "trades")
    out = df.reset_index(drop=True)
    price = _num(out["price"])
    size = _num(out["size"])
    required = ["symbol", "ts_event", "exchange", "trade_id", "sequence", "source", "ts_ingest"]
    exch = _num(out["exchange"])
    checks = [
        (out[required].isna().any(axis=1).to_numpy(), "not_null_violation"),
        (~(price > 0).to_numpy(), "trades_price_positive"),
        (~(size > 0).to_numpy(), "trades_size_positive"),
        (~exch.between(-32768, 32767).to_numpy(), "exchange_out_of_range"),
        (
            text_has_nul(out["symbol"])
            | text_has_nul(out["trade_id"])
            | text_has_nul(out["source"]),
            "text_has_nul",
        ),
    ]
    tape_num = pd.Series(np.nan, index=out.index)
    if "tape" in out:
        tape_num = _num(out["tape"])
        tape_bad = out["tape"].notna() & ~tape_num.between(-32768, 32767)
        checks.append((tape_bad.to_numpy(), "tape_out_of_range"))
    ok, reasons = first_failures(checks, len(out))
    rejects: list[DlqRecord] = []
    if not ok.all():
        for i in np.flatnonzero(~ok):
            row = out.iloc[i]
            rejects.append(
                DlqRecord(
                    source=TRADE_DLQ_SOURCE,
                    reason=str(reasons[i]),
                    payload=_row_json(row),
                    detail="row violates a trades constraint",
                    key=None if pd.isna(row["symbol"]) else str(row["symbol"]),
                )
            )
        out = out[ok].reset_index(drop=True)
        price, size = price[ok].reset_index(drop=True), size[ok].reset_index(drop=True)
        tape_num = tape_num[ok].reset_index(drop=True)
    # np.fromiter builds a 1-d object array of the lists (pd.Series(lists) probes for 2-d).
    if "conditions" in out:
        lists = (c if type(c) is list else _as_list(c) for c in out["conditions"].tolist())
    else:
        lists = ([] for _ in range(len(out)))
    conds = pd.Series(np.fromiter(lists, dtype=object, count=len(out)), dtype=object)
    typed = pd.DataFrame(
        {
            "symbol": _str(out["symbol"]),
            "ts_event": out["ts_event"].astype("int64"),
            "price": price.astype("float64"),
            "size": size.astype("float64"),
            "exchange": out["exchange"].astype("int64"),
            "trade_id": _str(out["trade_id"]),
            "sequence": out["sequence"].astype("int64"),
            "conditions": conds,
            "tape": tape_num.astype("Int64"),  # bad tapes were split off above
            "source": _str(out["source"]),
            "ts_ingest": out["ts_ingest"].astype("int64"),
        }
    )
    return typed, rejects


def _str(col: pd.Series) -> pd.Series:
    """``astype(str)``, skipped when every value is a str already (a C scan, not a copy)."""
    if col.dtype == object and pd.api.types.infer_dtype(col, skipna=False) == "string":
        return col
    return col.astype(str)


def _num(col: pd.Series) -> pd.Series:
    """``pd.to_numeric(errors="coerce")``, skipped for a column that is numeric already."""
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return col
    return pd.to_numeric(col, errors="coerce")


def finish_trades(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return empty_trades()
    out = pd.DataFrame(
        {
            "symbol": df["symbol"].astype(str),
            "ts_event": df["ts_event"].astype("int64"),
            "price": df["price"].astype("float64"),
            "size": df["size"].astype("float64"),
            "exchange": df["exchange"].astype("int64"),
            "trade_id": df["trade_id"].astype(str),
            "sequence": df["sequence"].astype("int64"),
            "conditions": df["conditions"].map(lambda c: [] if c is None else [int(x) for x in c]),
            "tape": pd.to_numeric(df["tape"].astype(object)).astype("Int64"),
            "source": df["source"].astype(str),
            "ts_ingest": df["ts_ingest"].astype("int64"),
        }
    )
    return out.reset_index(drop=True)


def empty_trades() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": pd.Series(dtype=object),
            "ts_event": pd.Series(dtype="int64"),
            "price": pd.Series(dtype="float64"),
            "size": pd.Series(dtype="float64"),
            "exchange": pd.Series(dtype="int64"),
            "trade_id": pd.Series(dtype=object),
            "sequence": pd.Series(dtype="int64"),
            "conditions": pd.Series(dtype=object),
            "tape": pd.Series(dtype="Int64"),
            "source": pd.Series(dtype=object),
            "ts_ingest": pd.Series(dtype="int64"),
        }
    )


@_types_refused
def prepare_bars(df: pd.DataFrame) -> pd.DataFrame:
    require_columns(df, BAR_COLUMNS, "bars")
    out = df.loc[:, list(BAR_COLUMNS)].copy()
    out["ts"] = key_ts(out["ts"])
    for c in ("open", "high", "low", "close", "volume", "vwap"):
        out[c] = out[c].astype("float64")
    out["trade_count"] = out["trade_count"].astype("int64")
    out["symbol"] = _text_key(out["symbol"], "symbol")
    # The engine's bars: they replace a vendor bar of the same minute (sql/006_ohlcv_source.sql).
    out["source"] = ENGINE_BAR_SOURCE
    # A batch may repeat a key (a re-emitted bar): the last one wins, as in a later batch.
    return out.drop_duplicates(["symbol", "ts"], keep="last").reset_index(drop=True)


ENGINE_BAR_SOURCE: Final = "trades"
VENDOR_BAR_SOURCES: Final = ("polygon_aggs", "yfinance")
# Which bar of a minute stands when sources meet, best first: the engine's (made from the trades
# themselves), Polygon's aggregates (as traded: unadjusted, with vwap and trade count), Yahoo's
# (split-adjusted, no vwap or count). A bar replaces one of its own rank or worse, never better.
BAR_SOURCE_RANK: Final = (ENGINE_BAR_SOURCE, *VENDOR_BAR_SOURCES)


def bar_rank_sql(column: str) -> str:
    """SQL: the :data:`BAR_SOURCE_RANK` position of the source in ``column`` (0 is best)."""
    whens = " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(BAR_SOURCE_RANK))
    return f"(CASE {column} {whens} ELSE {len(BAR_SOURCE_RANK)} END)"


def vendor_bar_replaces_sql(table: str = "ohlcv_1m") -> str:
    """SQL: the upsert's condition — the incoming (``excluded``) bar ranks as well or better."""
    return f"{bar_rank_sql('excluded.source')} <= {bar_rank_sql(table + '.source')}"


@_types_refused
def prepare_vendor_bars(df: pd.DataFrame) -> pd.DataFrame:
    """Vendor bars (``BAR_COLUMNS`` + ``source``, one of :data:`VENDOR_BAR_SOURCES`);
    ``trade_count`` may be missing (NA: the vendor does not say), ``vwap`` NaN."""
    require_columns(df, (*BAR_COLUMNS, "source"), "vendor bars")
    out = df.loc[:, [*BAR_COLUMNS, "source"]].copy()
    bad = sorted(set(out["source"].astype(str)) - set(VENDOR_BAR_SOURCES))
    if bad:
        raise ValueError(f"vendor bars: source must be one of {VENDOR_BAR_SOURCES}, got {bad}")
    out["ts"] = key_ts(out["ts"])
    for c in ("open", "high", "low", "close", "volume", "vwap"):
        out[c] = out[c].astype("float64")
    out["trade_count"] = out["trade_count"].astype("Int64")
    out["symbol"] = _text_key(out["symbol"], "symbol")
    out["source"] = out["source"].astype(object)
    return out.drop_duplicates(["symbol", "ts"], keep="last").reset_index(drop=True)


def finish_bars(df: pd.DataFrame) -> pd.DataFrame:
    """Bars as read: ``trade_count`` int64, or nullable Int64 when a vendor bar without a
    count (yfinance) is among them."""
    out = df.loc[:, list(BAR_COLUMNS)].copy() if not df.empty else empty(BAR_COLUMNS)
    out["symbol"] = out["symbol"].astype(object)
    out["ts"] = utc_ns(out["ts"])
    for c in ("open", "high", "low", "close", "volume", "vwap"):
        out[c] = out[c].astype("float64")
    counts = out["trade_count"].astype("Int64")
    out["trade_count"] = counts.astype("int64") if not counts.isna().any() else counts
    return out.reset_index(drop=True)


def finish_bar_sources(df: pd.DataFrame) -> pd.DataFrame:
    cols = ("symbol", "ts", "source")
    out = df.loc[:, list(cols)].copy() if not df.empty else empty(cols)
    out["symbol"] = out["symbol"].astype(object)
    out["ts"] = utc_ns(out["ts"])
    out["source"] = out["source"].astype(object)
    return out.reset_index(drop=True)


FEATURE_FRAME_COLUMNS = ("symbol", "ts", *FEATURE_COLUMNS, "feature_set_version")
DEFAULT_FEATURE_SET_VERSION = 1


@_types_refused
def prepare_features(df: pd.DataFrame) -> pd.DataFrame:
    require_columns(df, ("symbol", "ts", *FEATURE_COLUMNS), "features")
    out = df.copy()
    # A row without a version gets the default whether or not other rows have one (a poll
    # mixing both gives a NaN column), so the same row is never accepted in one batch and
    # refused in another.
    if "feature_set_version" not in out:
        out["feature_set_version"] = DEFAULT_FEATURE_SET_VERSION
    else:
        fsv = out["feature_set_version"]
        out["feature_set_version"] = fsv.where(fsv.notna(), DEFAULT_FEATURE_SET_VERSION)
    out = out.loc[:, list(FEATURE_FRAME_COLUMNS)]
    out["symbol"] = _text_key(out["symbol"], "symbol")
    out["ts"] = key_ts(out["ts"])
    for c in FEATURE_COLUMNS:  # a value that is not a number is refused, not stored as NULL
        out[c] = _numbers(out[c], c).astype("float64")
    out["feature_set_version"] = _int_col(out["feature_set_version"], "feature_set_version")
    return out.drop_duplicates(["symbol", "ts", "feature_set_version"], keep="last").reset_index(
        drop=True
    )


def finish_features(df: pd.DataFrame) -> pd.DataFrame:
    out = (
        df.loc[:, list(FEATURE_FRAME_COLUMNS)].copy()
        if not df.empty
        else empty(FEATURE_FRAME_COLUMNS)
    )
    out["symbol"] = out["symbol"].astype(object)
    out["ts"] = utc_ns(out["ts"])
    for c in FEATURE_COLUMNS:
        out[c] = pd.to_numeric(out[c]).astype("float64")
    out["feature_set_version"] = out["feature_set_version"].astype("int64")
    return out.reset_index(drop=True)


@_types_refused
def prepare_predictions(df: pd.DataFrame) -> pd.DataFrame:
    require_columns(df, ("symbol", "ts", "model_name", "model_version", "value"), "predictions")
    out = df.copy()
    if "label" not in out:
        out["label"] = None
    if "feature_set_version" not in out:
        out["feature_set_version"] = 1
    out = out.loc[:, list(PREDICTION_COLUMNS)]
    out["symbol"] = _text_key(out["symbol"], "symbol")
    out["ts"] = key_ts(out["ts"])
    out["value"] = _numbers(out["value"], "value").astype("float64")
    out["model_name"] = _text_key(out["model_name"], "model_name")
    out["model_version"] = _text_key(out["model_version"], "model_version", ints=True)
    out["label"] = out["label"].astype(object).where(out["label"].notna(), None)
    out["feature_set_version"] = _int_col(out["feature_set_version"], "feature_set_version")
    return out.drop_duplicates(
        ["symbol", "ts", "model_name", "model_version"], keep="last"
    ).reset_index(drop=True)


def finish_predictions(df: pd.DataFrame) -> pd.DataFrame:
    out = df.loc[:, list(PREDICTION_COLUMNS)].copy() if not df.empty else empty(PREDICTION_COLUMNS)
    out["ts"] = utc_ns(out["ts"])
    out["value"] = out["value"].astype("float64")
    out["label"] = out["label"].astype(object).where(out["label"].notna(), None)
    out["feature_set_version"] = out["feature_set_version"].astype("int64")
    return out.reset_index(drop=True)


@_types_refused
def prepare_anomalies(df: pd.DataFrame) -> pd.DataFrame:
    require_columns(df, ANOMALY_COLUMNS, "anomalies")
    out = df.loc[:, list(ANOMALY_COLUMNS)].copy()
    out["symbol"] = _text_key(out["symbol"], "symbol")
    out["ts"] = key_ts(out["ts"])
    out["model_version"] = _text_key(out["model_version"], "model_version", ints=True)
    out["score"] = out["score"].astype("float64")
    out["is_anomaly"] = out["is_anomaly"].astype(bool)
    return out.drop_duplicates(["symbol", "ts", "model_version"], keep="last").reset_index(
        drop=True
    )


@_types_refused
def prepare_drift(df: pd.DataFrame) -> pd.DataFrame:
    require_columns(df, ("feature", "window_start", "window_end", "psi"), "drift")
    out = df.copy()
    if "reference" not in out:
        out["reference"] = ""
    if "feature_set_version" not in out:
        out["feature_set_version"] = 1
    out = out.loc[:, list(DRIFT_COLUMNS)]
    out["feature"] = _text_key(out["feature"], "feature")
    out["window_start"] = key_ts(out["window_start"])
    out["window_end"] = key_ts(out["window_end"])
    out["psi"] = out["psi"].astype("float64")
    out["reference"] = out["reference"].fillna("").astype(str)
    out["feature_set_version"] = out["feature_set_version"].astype("int64")
    return out.drop_duplicates(
        ["feature", "feature_set_version", "window_start", "window_end"], keep="last"
    ).reset_index(drop=True)


def empty(columns: tuple[str, ...] | list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def ts_range_ns(start: pd.Timestamp, end: pd.Timestamp) -> tuple[int, int]:
    return int(start.value), int(end.value)
