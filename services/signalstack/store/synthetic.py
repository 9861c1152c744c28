"""Synthetic trade frames for tests and benchmarks (seeded, shaped like ``TradeEvent.to_dict()``).

Not market-realistic (the simulator in signalstack.marketdata is): only the column types, key
uniqueness, a realistic mix of condition lists and NULL tapes matter here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "TSLA", "SPY")


def synthetic_trades(
    n: int,
    *,
    seed: int = 0,
    start: str | pd.Timestamp = "2024-03-05 14:30:00+00:00",
    span_s: float = 6.5 * 3600,
    symbols: tuple[str, ...] = SYMBOLS,
    id_prefix: str = "",
) -> pd.DataFrame:
    """``n`` distinct trades in [start, start + span_s), time-ordered; ids are unique per call
    (use ``id_prefix`` to make several calls disjoint)."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start).value
    ts = np.sort(t0 + rng.integers(0, int(span_s * 1e9), n))
    sym = np.asarray(symbols)[rng.integers(0, len(symbols), n)]
    cond_choices: list[list[int]] = [[], [], [], [37], [12], [14, 41], [37, 12]]
    conds = [cond_choices[i] for i in rng.integers(0, len(cond_choices), n)]
    tape = pd.Series(rng.integers(1, 4, n)).astype("Int64").mask(rng.random(n) >= 0.9)
    return pd.DataFrame(
        {
            "symbol": sym.astype(object),
            "ts_event": ts.astype(np.int64),
            "price": np.round(rng.uniform(10, 500, n), 4),
            "size": rng.integers(1, 1000, n).astype(np.float64),
            "exchange": rng.integers(1, 21, n).astype(np.int64),
            "trade_id": [f"{id_prefix}{i}" for i in range(n)],
            "sequence": np.arange(n, dtype=np.int64),
            "conditions": conds,
            "tape": tape,
            "source": "sim",
            "ts_ingest": (ts + rng.integers(1_000, 5_000_000, n)).astype(np.int64),
        }
    )
