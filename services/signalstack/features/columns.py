"""Column names of the frames the feature library reads and writes (fixed contracts).

trades (``market.trades`` rows, ``TradeEvent.to_dict()``): :data:`TRADE_COLUMNS`.
bars (table ``ohlcv_1m``): :data:`BAR_COLUMNS`, ``ts`` = the bar END (UTC).
features (table ``features``): ``symbol``, ``ts``, :data:`FEATURE_COLUMNS` (float64, NaN when
undefined), ``feature_set_version``.
"""

from __future__ import annotations

from typing import Final

FEATURE_SET_VERSION: Final = 1

TRADE_COLUMNS: Final = (
    "symbol",
    "ts_event",
    "price",
    "size",
    "exchange",
    "trade_id",
    "sequence",
    "conditions",
    "tape",
    "source",
    "ts_ingest",
)
# What the feature math needs from a trade (tape, source and ts_ingest are carried, never used).
REQUIRED_TRADE_COLUMNS: Final = tuple(
    c for c in TRADE_COLUMNS if c not in ("tape", "source", "ts_ingest")
)

BAR_COLUMNS: Final = (
    "symbol",
    "ts",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "trade_count",
)

FEATURE_COLUMNS: Final = (
    "vwap_5m",
    "vwap_15m",
    "realized_vol_5m",
    "realized_vol_15m",
    "price_momentum_1m",
    "price_momentum_5m",
    "volume_5m",
    "volume_ratio",
    "trade_count_1m",
    "avg_trade_size_1m",
)
FEATURE_FRAME_COLUMNS: Final = ("symbol", "ts", *FEATURE_COLUMNS, "feature_set_version")
