"""Hand-built bars on explicit sessions for the training tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from signalstack.features.sessions import SessionIndex

OPEN = pd.Timestamp("2024-03-05 14:30", tz="UTC")  # 09:30 New York
CLOSE = OPEN + pd.Timedelta(minutes=390)
NEXT_OPEN = OPEN + pd.Timedelta(days=1)
SESSIONS = SessionIndex.from_bounds(
    [(OPEN, CLOSE), (NEXT_OPEN, NEXT_OPEN + pd.Timedelta(minutes=390))]
)


def minute(m: int, day: int = 0) -> pd.Timestamp:
    """The bar END ``m`` minutes after the open of session ``day`` (0 or 1)."""
    return (OPEN if day == 0 else NEXT_OPEN) + pd.Timedelta(minutes=m)


def make_bars(
    ends: Sequence[pd.Timestamp],
    opens: Sequence[float],
    closes: Sequence[float],
    symbol: str = "AAA",
) -> pd.DataFrame:
    n = len(ends)
    o = np.asarray(opens, dtype=float)
    c = np.asarray(closes, dtype=float)
    return pd.DataFrame(
        {
            "symbol": [symbol] * n,
            "ts": pd.to_datetime(list(ends), utc=True),
            "open": o,
            "high": np.maximum(o, c),
            "low": np.minimum(o, c),
            "close": c,
            "volume": np.full(n, 1000.0),
            "vwap": (o + c) / 2,
            "trade_count": np.full(n, 10, dtype=np.int64),
        }
    )


def path_bars(start_minute: int, closes: Sequence[float], day: int = 0) -> pd.DataFrame:
    """Consecutive bars from ``start_minute`` whose open is the previous close (the first
    opens at its own close)."""
    c = list(closes)
    o = [c[0], *c[:-1]]
    ends = [minute(start_minute + i, day) for i in range(len(c))]
    return make_bars(ends, o, c)
