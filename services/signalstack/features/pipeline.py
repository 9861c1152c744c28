"""Batch entry point: a frame of trades → (bars, features), the whole way in one call.

Used by training/backfill and as the reference the stream engines are tested against. It is the
same math the engines run incrementally (they call the same functions on the same arrays).
"""

from __future__ import annotations

import pandas as pd

from signalstack.features.bars import aggregate_minutes
from signalstack.features.conditions import EligibilityRules, bundled_rules
from signalstack.features.definitions import feature_frame
from signalstack.features.sessions import SessionIndex, session_index
from signalstack.features.trades import SymbolCodes, duplicate_mask, prepare


def bars_and_features(
    trades: pd.DataFrame,
    rules: EligibilityRules | None = None,
    sessions: SessionIndex | None = None,
    *,
    extended_hours: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Deduplicate (first row wins), filter by session and eligibility, build 1-minute bars and
    their features. Rows are sorted by (symbol, ts)."""
    rules = rules or bundled_rules()
    sessions = sessions or session_index("XNYS", extended_hours)
    codes = SymbolCodes(sorted(trades["symbol"].unique().tolist()))
    p = prepare(trades, rules, sessions, codes)
    dup = duplicate_mask(p.ident, (p.trades.sym, p.exchange, p.trade_id))
    t = p.trades.take(~dup)
    minutes = aggregate_minutes(t)
    names = codes.names
    bars = minutes.bar_frame(names)
    feats = feature_frame(minutes, names)
    return bars.reset_index(drop=True), feats.reset_index(drop=True)


__all__ = ["bars_and_features"]
