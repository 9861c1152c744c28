"""Trade preparation: columns → arrays with symbol codes, eligibility flags and session starts;
deduplication on trade identity (symbol, exchange, trade_id), first seen wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from signalstack.features.bars import TradeArrays
from signalstack.features.columns import REQUIRED_TRADE_COLUMNS
from signalstack.features.conditions import EligibilityRules
from signalstack.features.errors import FeatureInputError
from signalstack.features.sessions import SessionIndex

_MIX_EXCHANGE: Final = np.uint64(0x9E3779B97F4A7C15)
_MIX_SYMBOL: Final = np.uint64(0xC2B2AE3D27D4EB4F)


class SymbolCodes:
    """Stable symbol → int32 code registry (codes index :attr:`names`)."""

    def __init__(self, symbols: Iterable[str] = ()) -> None:
        self._codes: dict[str, int] = {}
        self._names: list[str] = []
        for s in symbols:
            self.code(s)

    def code(self, symbol: str) -> int:
        c = self._codes.get(symbol)
        if c is None:
            c = len(self._names)
            self._codes[symbol] = c
            self._names.append(symbol)
        return c

    def encode(self, symbols: Any) -> npt.NDArray[np.int32]:
        """Vectorised: factorize the batch, then map its few distinct symbols."""
        codes, uniques = pd.factorize(np.asarray(symbols, dtype=object))
        lut = np.array([self.code(str(u)) for u in uniques], dtype=np.int32)
        return lut[codes] if len(lut) else np.zeros(len(codes), dtype=np.int32)

    @property
    def names(self) -> npt.NDArray[np.object_]:
        return np.array(self._names, dtype=object)


@dataclass(slots=True)
class Prepared:
    """A batch of trades as arrays plus what dedup needs; row ``i`` is input row ``i``."""

    trades: TradeArrays
    exchange: npt.NDArray[np.int64]
    trade_id: npt.NDArray[np.object_]
    ident: npt.NDArray[np.int64]  # 64-bit identity hash (candidates only; verified exactly)
    unknown_conditions: int


def identity_hash(
    sym: npt.NDArray[np.int32], exchange: npt.NDArray[np.int64], trade_id: npt.NDArray[np.object_]
) -> npt.NDArray[np.int64]:
    """A deterministic 64-bit hash of (symbol code, exchange, trade_id)."""
    if len(trade_id) == 0:
        return np.zeros(0, dtype=np.int64)
    h = pd.util.hash_array(trade_id, categorize=False)
    with np.errstate(over="ignore"):
        h = h ^ (exchange.astype(np.uint64) * _MIX_EXCHANGE) ^ (sym.astype(np.uint64) * _MIX_SYMBOL)
    out: npt.NDArray[np.int64] = h.view(np.int64)
    return out


def prepare(
    df: pd.DataFrame, rules: EligibilityRules, sessions: SessionIndex, codes: SymbolCodes
) -> Prepared:
    """Trades frame (DataFrame convention in :mod:`signalstack.features.columns`) → arrays."""
    missing = [c for c in REQUIRED_TRADE_COLUMNS if c not in df.columns]
    if missing:
        raise FeatureInputError("trades frame lacks columns: " + ", ".join(missing))
    sym = codes.encode(df["symbol"].to_numpy(dtype=object))
    ts = df["ts_event"].to_numpy(dtype=np.int64)
    elig = rules.flags(df["conditions"].to_numpy(dtype=object))
    exchange = df["exchange"].to_numpy(dtype=np.int64)
    trade_id = df["trade_id"].to_numpy(dtype=object)
    trades = TradeArrays(
        sym=sym,
        ts=ts,
        seq=df["sequence"].to_numpy(dtype=np.int64),
        price=df["price"].to_numpy(dtype=np.float64),
        size=df["size"].to_numpy(dtype=np.float64),
        flags=elig.flags,
        session=sessions.session_start(ts),
    )
    return Prepared(
        trades=trades,
        exchange=exchange,
        trade_id=trade_id,
        ident=identity_hash(sym, exchange, trade_id),
        unknown_conditions=elig.unknown_codes,
    )


def duplicate_mask(
    ident: npt.NDArray[np.int64],
    keys: tuple[npt.NDArray[Any], ...],
    prior_ident: npt.NDArray[np.int64] | None = None,
    prior_keys: tuple[npt.NDArray[Any], ...] | None = None,
) -> npt.NDArray[np.bool_]:
    """True where a row's identity was already seen: in ``prior`` or earlier in this batch.

    Hash equality only nominates candidates; each candidate is confirmed on the exact key
    columns (duplicates are rare, so this Python step touches few rows).
    """
    n_prior = 0 if prior_ident is None else len(prior_ident)
    all_h = ident if prior_ident is None or n_prior == 0 else np.concatenate([prior_ident, ident])
    cand = pd.Series(all_h).duplicated(keep="first").to_numpy()[n_prior:]
    if not cand.any():
        return cand
    if prior_keys is not None and n_prior:
        all_keys = tuple(np.concatenate([p, k]) for p, k in zip(prior_keys, keys, strict=True))
    else:
        all_keys = keys
    # exact confirmation on the rows sharing a candidate hash, vectorised
    wanted = np.unique(all_h[n_prior:][cand])
    rows = np.flatnonzero(np.isin(all_h, wanted))
    sub = pd.DataFrame({f"k{i}": k[rows] for i, k in enumerate(all_keys)})
    exact = sub.duplicated(keep="first").to_numpy()
    out = np.zeros(len(ident), dtype=bool)
    hit = rows[exact]
    out[hit[hit >= n_prior] - n_prior] = True
    return out
