"""Storage: one :class:`Store` interface, an embedded DuckDB and a TimescaleDB implementation."""

from signalstack.store.base import (
    FEATURE_COLUMNS,
    BackfillRun,
    DlqRecord,
    SchemaMismatchError,
    Store,
    StoreError,
    open_store,
)

__all__ = [
    "FEATURE_COLUMNS",
    "BackfillRun",
    "DlqRecord",
    "SchemaMismatchError",
    "Store",
    "StoreError",
    "open_store",
]
