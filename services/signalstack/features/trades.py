"""Trade preparation: columns → arrays with symbol codes, eligibility flags and session starts;
deduplication on trade identity (symbol, exchange, trade_id), first seen wins.

Two input forms, same arrays out: an Arrow ``RecordBatch``/``Table`` (the columnar edge: list
and string columns are read from their buffers, no Python object per trade) or a pandas frame
(the ``market.trades`` DataFrame convention; its object columns are converted once).

A ``trade_id`` is kept as fixed-width bytes (``S8``, ``S16``, …: its UTF-8 bytes, zero-padded
to a multiple of 8) plus a 64-bit identity hash of (symbol code, exchange, bytes, byte length).
Equal padded bytes and an equal hash imply equal ids (the length enters the hash through a
bijection), so dedup confirms candidates exactly on (symbol, exchange, bytes, hash).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, Final, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from signalstack.features.bars import TradeArrays
from signalstack.features.columns import REQUIRED_TRADE_COLUMNS
from signalstack.features.conditions import EligibilityRules
from signalstack.features.errors import FeatureInputError
from signalstack.features.sessions import SessionIndex

_MIX_EXCHANGE: Final = np.uint64(0x9E3779B97F4A7C15)
_MIX_SYMBOL: Final = np.uint64(0xC2B2AE3D27D4EB4F)
_MIX_LENGTH: Final = np.uint64(0x165667B19E3779F9)
_MIX_WORD: Final = np.uint64(0xD6E8FEB86659FD93)
# _BYTE_MASKS[r] keeps the low r bytes of a little-endian word
_BYTE_MASKS: Final = np.array(
    [(1 << (8 * r)) - 1 for r in range(8)] + [(1 << 64) - 1], dtype=np.uint64
)
_NULL_LENGTH: Final = -1  # a null trade_id: distinct from the empty string

TradeIdBytes: TypeAlias = npt.NDArray[np.bytes_]
# A micro-batch of trades: a pandas frame (the ``market.trades`` DataFrame convention) or the
# same columns as an Arrow record batch/table (the columnar edge: no Python object per trade).
TradeBatch: TypeAlias = "pd.DataFrame | pa.RecordBatch | pa.Table"


class SymbolCodes:
    """Stable symbol → int32 code registry (codes index :attr:`names`)."""

    def __init__(self, symbols: Iterable[str] = ()) -> None:
        self._codes: dict[str, int] = {}
        self._names: list[str] = []
        # the last Arrow dictionary seen and its codes (a stream's batches repeat it)
        self._last_dictionary: pa.Array | None = None
        self._last_lut = np.zeros(0, dtype=np.int32)
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

    def encode_arrow(self, symbols: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.int32]:
        """Vectorised on an Arrow string or dictionary array (map its few distinct symbols)."""
        arr = _combined(symbols)
        if not pa.types.is_dictionary(arr.type):
            arr = pc.dictionary_encode(arr)
        if arr.null_count:
            raise FeatureInputError("trades frame has a null symbol")
        dictionary = arr.dictionary
        last = self._last_dictionary
        if last is not None and (dictionary is last or dictionary.equals(last)):
            lut = self._last_lut
        else:
            lut = np.array([self.code(str(u)) for u in dictionary.to_pylist()], dtype=np.int32)
            self._last_dictionary, self._last_lut = dictionary, lut
        idx = arr.indices.to_numpy()
        return lut[idx] if len(lut) else np.zeros(len(idx), dtype=np.int32)

    @property
    def names(self) -> npt.NDArray[np.object_]:
        return np.array(self._names, dtype=object)


@dataclass(slots=True)
class Prepared:
    """A batch of trades as arrays plus what dedup needs; row ``i`` is input row ``i``."""

    trades: TradeArrays
    exchange: npt.NDArray[np.int64]
    trade_id: TradeIdBytes  # UTF-8 bytes, zero-padded (see the module doc)
    ident: npt.NDArray[np.int64]  # 64-bit identity hash (candidates only; verified exactly)
    unknown_conditions: int


def trade_id_bytes(
    trade_id: pa.Array | pa.ChunkedArray | npt.NDArray[Any] | pd.Series,
) -> tuple[TradeIdBytes, npt.NDArray[np.int64]]:
    """Trade ids → (zero-padded fixed-width UTF-8 bytes, byte length; −1 for a null id).

    Arrow string/binary arrays are read from their buffers (one unaligned 8-byte gather per
    8 bytes of the longest id); anything else is converted to an Arrow string array first
    (non-string values by ``str``).
    """
    arr = (
        trade_id if isinstance(trade_id, (pa.Array, pa.ChunkedArray)) else _arrow_strings(trade_id)
    )
    arr = _combined(arr)
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if pa.types.is_string(arr.type) or pa.types.is_binary(arr.type):
        off_t: type[np.int32] | type[np.int64] = np.int32
    elif pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type):
        off_t = np.int64
    else:
        arr = _arrow_strings(np.asarray(arr.to_pylist(), dtype=object))
        off_t = np.int32
    n = len(arr)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=off_t)[arr.offset : arr.offset + n + 1].astype(np.int64)
    lens = np.diff(offsets)
    if arr.null_count:
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        lens = np.where(valid, lens, 0)
    else:
        valid = None
    width = max(1, -(-int(lens.max(initial=0)) // 8))  # 8-byte words per id
    lo, hi = int(offsets[0]), int(offsets[-1])
    # + 8·width: every 8-byte read of every word stays in bounds (reads past an id are masked)
    data = np.zeros(hi - lo + 8 * width, dtype=np.uint8)
    if hi > lo:
        data[: hi - lo] = np.frombuffer(bufs[2], dtype=np.uint8)[lo:hi]
    # element i = the 8 bytes starting at byte i (little-endian: byte 0 is the low byte)
    at = np.ndarray(shape=(len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))
    start = offsets[:-1] - lo
    words = np.empty((n, width), dtype="<u8")
    short = int(lens.min(initial=0))
    masks = _word_masks(width)
    for k in range(width):
        w = at[start + 8 * k] if k else at[start]
        if short < 8 * (k + 1):  # some ids end inside this word: zero the bytes after them
            w &= masks[lens + 8 * (width - k)]
        words[:, k] = w
    out: TradeIdBytes = words.view(f"S{8 * width}").reshape(n)
    if valid is not None:
        lens = np.where(valid, lens, _NULL_LENGTH)
    return out, lens


@cache
def _word_masks(width: int) -> npt.NDArray[np.uint64]:
    """``masks[length + 8·(width − k)]`` keeps the bytes of word ``k`` that belong to an id
    of ``length`` bytes (read-only: shared by every batch of that width)."""
    masks = _BYTE_MASKS[np.clip(np.arange(-8 * width, 8 * width + 1), 0, 8)]
    masks.flags.writeable = False
    return masks


def identity_hash(
    sym: npt.NDArray[np.int32],
    exchange: npt.NDArray[np.int64],
    trade_id: TradeIdBytes,
    length: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]:
    """A deterministic 64-bit hash of (symbol code, exchange, trade_id bytes, byte length).

    Zero words add nothing, so the padded width does not matter; for equal (symbol, exchange,
    bytes) the hash is a bijection of the length (so equal hash + equal padded bytes → equal id).
    """
    n = len(trade_id)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    width = trade_id.dtype.itemsize // 8
    words = np.ascontiguousarray(trade_id).view("<u8").reshape(n, width)
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(width):
            h += _mix64(words[:, k].astype(np.uint64)) * (_MIX_WORD + np.uint64(2 * k))
        h ^= length.astype(np.int64).view(np.uint64) * _MIX_LENGTH
        h ^= exchange.astype(np.uint64) * _MIX_EXCHANGE
        h ^= sym.astype(np.uint64) * _MIX_SYMBOL
        h = _mix64(h)
    out: npt.NDArray[np.int64] = h.view(np.int64)
    return out


def _mix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's finalizer: a bijection of uint64 with 0 → 0."""
    x = x ^ (x >> np.uint64(30))
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _arrow_strings(values: Any) -> pa.Array:
    obj = np.asarray(values, dtype=object)
    try:
        return pa.array(obj, type=pa.string(), from_pandas=True)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.array(
            [None if v is None or v is pd.NA or v != v else str(v) for v in obj], type=pa.string()
        )


def _combined(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        return arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr


def prepare(
    batch: TradeBatch,
    rules: EligibilityRules,
    sessions: SessionIndex,
    codes: SymbolCodes,
) -> Prepared:
    """A batch of trades (columns in :mod:`signalstack.features.columns`) → arrays.

    ``batch``: an Arrow record batch/table (columnar edge) or a pandas frame.
    """
    if isinstance(batch, (pa.RecordBatch, pa.Table)):
        names = batch.schema.names
        col = batch.column
        missing = [c for c in REQUIRED_TRADE_COLUMNS if c not in names]
        if missing:
            raise FeatureInputError("trades batch lacks columns: " + ", ".join(missing))
        sym = codes.encode_arrow(col("symbol"))
        conditions: Any = col("conditions")
        tid, tid_len = trade_id_bytes(col("trade_id"))
        num = {c: _numeric(col(c)) for c in ("ts_event", "sequence", "price", "size", "exchange")}
    else:
        missing = [c for c in REQUIRED_TRADE_COLUMNS if c not in batch.columns]
        if missing:
            raise FeatureInputError("trades frame lacks columns: " + ", ".join(missing))
        sym = codes.encode(batch["symbol"].to_numpy(dtype=object))
        conditions = batch["conditions"].to_numpy(dtype=object)
        tid, tid_len = trade_id_bytes(batch["trade_id"].to_numpy(dtype=object))
        num = {
            c: batch[c].to_numpy() for c in ("ts_event", "sequence", "price", "size", "exchange")
        }
    ts = num["ts_event"].astype(np.int64, copy=False)
    exchange = num["exchange"].astype(np.int64, copy=False)
    elig = rules.flags(conditions)
    trades = TradeArrays(
        sym=sym,
        ts=ts,
        seq=num["sequence"].astype(np.int64, copy=False),
        price=num["price"].astype(np.float64, copy=False),
        size=num["size"].astype(np.float64, copy=False),
        flags=elig.flags,
        session=sessions.session_start(ts),
    )
    return Prepared(
        trades=trades,
        exchange=exchange,
        trade_id=tid,
        ident=identity_hash(sym, exchange, tid, tid_len),
        unknown_conditions=elig.unknown_codes,
    )


def _numeric(arr: pa.Array | pa.ChunkedArray) -> npt.NDArray[Any]:
    a = _combined(arr)
    if a.null_count:
        raise FeatureInputError(f"trades batch has nulls in a numeric column ({a.type})")
    return a.to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]


def duplicate_mask(
    ident: npt.NDArray[np.int64],
    keys: tuple[npt.NDArray[Any], ...],
    prior_ident: npt.NDArray[np.int64] | None = None,
    prior_keys: tuple[npt.NDArray[Any], ...] | None = None,
) -> npt.NDArray[np.bool_]:
    """True where a row's identity was already seen: in ``prior`` or earlier in this batch.

    Hash equality only nominates candidates; each candidate is confirmed on the exact key
    columns plus the hash itself (duplicates are rare, so the confirmation touches few rows).
    """
    n_prior = 0 if prior_ident is None else len(prior_ident)
    all_h = ident if prior_ident is None or n_prior == 0 else np.concatenate([prior_ident, ident])
    cand = pd.Series(all_h).duplicated(keep="first").to_numpy()[n_prior:]
    if not cand.any():
        return cand
    # exact confirmation on the rows sharing a candidate hash, vectorised (hash-table lookups)
    wanted = pd.unique(all_h[n_prior:][cand])
    rows = np.flatnonzero(pd.Series(all_h).isin(wanted).to_numpy())
    if prior_keys is not None and n_prior:
        pr, nr = rows[rows < n_prior], rows[rows >= n_prior] - n_prior
        cols = [np.concatenate([p[pr], k[nr]]) for p, k in zip(prior_keys, keys, strict=True)]
    else:
        cols = [k[rows] for k in keys]
    exact = exact_repeats(all_h[rows], cols)
    out = np.zeros(len(ident), dtype=bool)
    hit = rows[exact]
    out[hit[hit >= n_prior] - n_prior] = True
    return out


def exact_repeats(h: npt.NDArray[np.int64], cols: list[npt.NDArray[Any]]) -> npt.NDArray[np.bool_]:
    """``DataFrame({h, *cols}).duplicated(keep="first")``: rows repeating an earlier row exactly.

    Usual case, vectorised: every row agrees on all columns with the first row of its hash.
    Otherwise (a real 64-bit collision) the frame does it.
    """
    order = np.argsort(h, kind="stable")
    hs = h[order]
    head = np.ones(len(hs), dtype=bool)
    head[1:] = hs[1:] != hs[:-1]
    first = order[np.flatnonzero(head)[np.cumsum(head) - 1]]  # each row's group head (input idx)
    if all(np.array_equal(c[order], c[first]) for c in cols):
        out = np.ones(len(h), dtype=bool)
        out[order[head]] = False
        return out
    frame = pd.DataFrame({f"k{i}": c for i, c in enumerate([*cols, h])})
    return frame.duplicated(keep="first").to_numpy()
