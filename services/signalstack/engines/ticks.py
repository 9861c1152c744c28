"""Seeded synthetic ticks in ARRIVAL order, with the awkward cases the engines must handle:
out-of-order arrival within the allowed lateness, late trades (arriving after their bar was
final), duplicates (re-sent identities, sometimes corrupted), odd lots, excluded and volume-only
conditions, and pre-market prints. For tests, the parity check and the feature bench; the
market-realistic generator is ``signalstack.marketdata.simulator``.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]

CONDITION_POOL: tuple[tuple[int, ...], ...] = (
    (),
    (14,),  # intermarket sweep (regular)
    (12,),  # Form T: volume only
    (2,),  # average price: volume only
    (10,),  # derivatively priced: high/low + volume
    (15,),  # official close: nothing
    (38,),  # corrected close: last + high/low, no volume
    (14, 41),
)
CONDITION_WEIGHTS = np.array([0.80, 0.08, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02])


def seeded_ticks(
    *,
    seed: int = 0,
    symbols: tuple[str, ...] = ("AAPL", "MSFT", "SPY"),
    session: str = "2024-03-05",
    minutes: int = 60,
    trades_per_minute: int = 50,
    odd_lot_frac: float = 0.15,
    jitter_ms: int = 1500,
    late_frac: float = 0.01,
    late_by_s: float = 180.0,
    dup_frac: float = 0.02,
    premarket: int = 5,
) -> pd.DataFrame:
    """Trades frame (the ``market.trades`` convention) sorted by arrival time ``ts_ingest``."""
    rng = np.random.default_rng(seed)
    open_ns = int(pd.Timestamp(f"{session} 09:30", tz="America/New_York").value)
    span = minutes * 60_000_000_000
    frames = []
    for k, sym in enumerate(symbols):
        n = minutes * trades_per_minute
        ts = np.sort(open_ns + rng.integers(0, span, n)).astype(np.int64)
        if premarket:
            pre = open_ns - rng.integers(1, 600_000_000_000, premarket)
            ts = np.concatenate([np.sort(pre), ts])
            n += premarket
        price = np.round(100.0 * (k + 1) * np.exp(np.cumsum(rng.normal(0, 4e-4, n))), 4)
        odd = rng.random(n) < odd_lot_frac
        size = np.where(odd, rng.integers(1, 100, n), 100 * rng.integers(1, 20, n)).astype(float)
        pick = rng.choice(len(CONDITION_POOL), n, p=CONDITION_WEIGHTS)
        conds = [
            [*CONDITION_POOL[i], 37] if o else list(CONDITION_POOL[i])
            for i, o in zip(pick, odd, strict=True)
        ]
        seq = np.arange(1, n + 1, dtype=np.int64) * 3 + k
        frames.append(
            pd.DataFrame(
                {
                    "symbol": sym,
                    "ts_event": ts,
                    "price": price,
                    "size": size,
                    "exchange": rng.integers(1, 20, n).astype(np.int64),
                    "trade_id": [f"{sym[:2]}{s}" for s in seq],
                    "sequence": seq,
                    "conditions": conds,
                    "tape": pd.array(np.full(n, 3), dtype="Int64"),
                    "source": "sim",
                }
            )
        )
    df = pd.concat(frames, ignore_index=True)
    n = len(df)
    # arrival: event time + jitter; a few trades very late; duplicates re-sent a bit later
    arrival = df["ts_event"].to_numpy() + rng.integers(0, jitter_ms * 1_000_000 + 1, n)
    late = rng.random(n) < late_frac
    arrival = np.where(late, arrival + int(late_by_s * 1e9), arrival)
    df["ts_ingest"] = arrival.astype(np.int64)
    dups = df[rng.random(n) < dup_frac].copy()
    dups["ts_ingest"] = dups["ts_ingest"] + rng.integers(1, jitter_ms * 1_000_000 + 1, len(dups))
    corrupt = rng.random(len(dups)) < 0.3  # a re-send with a different price: first seen wins
    dups.loc[corrupt, "price"] = dups.loc[corrupt, "price"] * 1.01
    df = pd.concat([df, dups], ignore_index=True)
    df = df.sort_values("ts_ingest", kind="stable").reset_index(drop=True)
    return df


def kafka_values(df: pd.DataFrame) -> list[tuple[bytes, bytes]]:
    """Trades frame → (key, JSON value) pairs in row order (the ``market.trades`` contract)."""
    import orjson

    out = []
    for r in df.to_dict("records"):
        tape = r.get("tape")
        value = {
            "schema_version": 1,
            "symbol": r["symbol"],
            "ts_event": int(r["ts_event"]),
            "price": float(r["price"]),
            "size": float(r["size"]),
            "exchange": int(r["exchange"]),
            "conditions": [int(c) for c in r["conditions"]],
            "trade_id": str(r["trade_id"]),
            "sequence": int(r["sequence"]),
            "tape": None if tape is None or pd.isna(tape) else int(tape),
            "source": str(r.get("source", "sim")),
            "ts_ingest": int(r.get("ts_ingest", r["ts_event"])),
        }
        out.append((str(r["symbol"]).encode(), orjson.dumps(value)))
    return out


def sentinel(symbols: list[str], when: str, seq: int) -> pd.DataFrame:
    """One print per symbol at ``when`` (America/New_York): sent out of session, it moves the
    watermark past every earlier bar without making a bar (ends a bounded replay)."""
    ts = pd.Timestamp(when, tz="America/New_York").value
    return pd.DataFrame(
        {
            "symbol": symbols,
            "ts_event": ts,
            "price": 1.0,
            "size": 1.0,
            "exchange": 1,
            "trade_id": [f"sentinel{seq}{s}" for s in symbols],
            "sequence": seq,
            "conditions": [[] for _ in symbols],
            "tape": 3,
            "source": "sim",
            "ts_ingest": ts,
        }
    )


TRADES_ARROW_SCHEMA: Final = pa.schema(
    [
        ("symbol", pa.dictionary(pa.int32(), pa.string())),
        ("ts_event", pa.int64()),
        ("price", pa.float64()),
        ("size", pa.float64()),
        ("exchange", pa.int64()),
        ("trade_id", pa.string()),
        ("sequence", pa.int64()),
        ("conditions", pa.list_(pa.int64())),
        ("tape", pa.int64()),
        ("source", pa.string()),
        ("ts_ingest", pa.int64()),
    ]
)


def to_arrow(df: pd.DataFrame) -> pa.RecordBatch:
    """Trades frame → an Arrow record batch of the same columns (:data:`TRADES_ARROW_SCHEMA`:
    dictionary-encoded symbol, ``list<int64>`` conditions) — the engines' columnar input."""
    cols = [c for c in TRADES_ARROW_SCHEMA.names if c in df.columns]
    schema = pa.schema([TRADES_ARROW_SCHEMA.field(c) for c in cols])
    return pa.RecordBatch.from_pandas(df[cols], schema=schema, preserve_index=False)


def in_batches(df: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    """Consecutive arrival-order slices of ``size`` rows."""
    return [df.iloc[i : i + size].reset_index(drop=True) for i in range(0, len(df), size)]


__all__ = ["TRADES_ARROW_SCHEMA", "in_batches", "seeded_ticks", "to_arrow"]
