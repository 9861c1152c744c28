"""Sale-condition eligibility: which of a trade's prices and sizes update which bar fields.

The rules are Polygon's consolidated update rules from ``/v3/reference/conditions`` (POLYGON.md,
"Trade conditions"); :meth:`EligibilityRules.from_response` takes that endpoint's response body
(live, or the bundled copy via :func:`bundled_rules`). Per trade, the rules combine as a logical
AND over all of its conditions; a trade without conditions is regular; a code missing from the
table counts as regular (and is counted, see :attr:`Eligibility.unknown_codes`).

Flags (bits of a ``uint8`` per trade):

- :data:`VOLUME` — volume-eligible: counts in bar volume, ``volume_5m``, ``trade_count_1m``,
  ``avg_trade_size_1m``;
- :data:`LAST` — last-eligible: sets open and close; a bar exists only for a minute with at least
  one such trade. The glossary's "updates last only if the day's first" footnote is NOT applied:
  such prints never update last;
- :data:`HIGH_LOW` — high/low-eligible: sets high and low;
- :data:`VWAP` — volume- and last-eligible once the odd-lot condition (37) is disregarded, so odd
  lots count in VWAP; average-price, derivatively priced and other off-market prints do not.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

VOLUME: Final = np.uint8(1)
LAST: Final = np.uint8(2)
HIGH_LOW: Final = np.uint8(4)
VWAP: Final = np.uint8(8)
ALL_FLAGS: Final = np.uint8(15)
ODD_LOT: Final = 37
# Codes are small non-negative ints (Polygon's ids are < 256); anything else counts as unknown.
_TABLE_SIZE: Final = 256
# In the lookup table, above the four flag bits: the code is missing from the rules.
_UNKNOWN: Final = np.uint8(16)


@dataclass(frozen=True, slots=True)
class Eligibility:
    """Per-trade flags and how many trades carried a code missing from the table."""

    flags: npt.NDArray[np.uint8]
    unknown_codes: int


class EligibilityRules:
    """A vectorised lookup: condition code → the flags it CLEARS (AND over a trade's codes)."""

    def __init__(self, rules: Mapping[int, tuple[bool, bool, bool]], source: str = "rest") -> None:
        """``rules``: code → (updates_high_low, updates_open_close, updates_volume)."""
        self.source = source
        self.rules = dict(rules)
        # clear[c] = flags a trade loses when it carries code c; known[c] marks table codes.
        clear = np.zeros(_TABLE_SIZE, dtype=np.uint8)
        known = np.zeros(_TABLE_SIZE, dtype=bool)
        for code, (hl, last, vol) in self.rules.items():
            if not 0 <= code < _TABLE_SIZE:
                continue
            known[code] = True
            bits = 0
            if not hl:
                bits |= int(HIGH_LOW)
            if not last:
                bits |= int(LAST)
            if not vol:
                bits |= int(VOLUME)
            if code != ODD_LOT and (not last or not vol):
                bits |= int(VWAP)
            clear[code] = bits
        # one table: the bits a code clears, plus _UNKNOWN for a code missing from the rules
        self._lookup = clear | np.where(known, np.uint8(0), _UNKNOWN).astype(np.uint8)

    @classmethod
    def from_response(cls, body: Mapping[str, Any], source: str = "rest") -> EligibilityRules:
        """Build from a ``/v3/reference/conditions`` response body, parsed by
        :func:`signalstack.marketdata.conditions.parse_rules` (trade conditions only)."""
        from signalstack.marketdata.conditions import parse_rules

        rules = {
            r.id: (r.updates_high_low, r.updates_open_close, r.updates_volume)
            for r in parse_rules(body)
        }
        return cls(rules, source=source)

    def flags_for(self, conditions: tuple[int, ...] | list[int]) -> int:
        """Flags of one trade (scalar path, for tests and docs)."""
        one = np.empty(1, dtype=object)
        one[0] = list(conditions)
        return int(self.flags(one).flags[0])

    def flags(self, conditions: Any) -> Eligibility:
        """Flags for a sequence of per-trade condition lists: an Arrow list array (columnar
        path: the flattened codes are used as they are), or an object array/Series of lists.

        Object path: two C-level passes over the Python lists (lengths, then the flattened
        codes). Both paths then run the same numpy: codes → cleared bits, OR-reduced per trade,
        inverted.
        """
        if isinstance(conditions, (pa.Array, pa.ChunkedArray)):
            return self.flags_arrow(conditions)
        vals = _object_array(conditions)
        n = len(vals)
        if n == 0:
            return Eligibility(np.zeros(0, dtype=np.uint8), 0)
        try:
            lens = np.fromiter(map(len, vals), dtype=np.int64, count=n)
        except TypeError:  # a missing list (None/NaN): no conditions, i.e. regular
            vals = np.array([v if isinstance(v, (list, tuple)) else () for v in vals], dtype=object)
            lens = np.fromiter(map(len, vals), dtype=np.int64, count=n)
        total = int(lens.sum())
        if total == 0:
            return Eligibility(np.full(n, ALL_FLAGS, dtype=np.uint8), 0)
        codes = np.fromiter(itertools.chain.from_iterable(vals), dtype=np.int64, count=total)
        return self.flags_flat(codes, lens)

    def flags_arrow(self, conditions: pa.Array | pa.ChunkedArray) -> Eligibility:
        """Flags from an Arrow ``list<int>`` array (a null list counts as no conditions, a null
        code as an unknown one): no Python object is touched."""
        arr = conditions.combine_chunks() if isinstance(conditions, pa.ChunkedArray) else conditions
        if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
            raise TypeError(f"conditions must be an Arrow list array, not {arr.type}")
        n = len(arr)
        if arr.null_count:
            lens = pc.list_value_length(arr).fill_null(0).to_numpy().astype(np.int64)
            values = pc.list_flatten(arr)  # the codes of the non-null lists, in row order
            if values.null_count:
                values = values.fill_null(-1)
            return self.flags_flat(values.to_numpy(), lens)
        # no null slot: the offsets delimit each trade's codes in the child array
        offs = arr.offsets.to_numpy()
        first, end = int(offs[0]), int(offs[-1])
        if end == first:
            return Eligibility(np.full(n, ALL_FLAGS, dtype=np.uint8), 0)
        values = arr.values.slice(first, end - first)
        if values.null_count:
            values = values.fill_null(-1)
        return self._from_codes(values.to_numpy(), offs[:-1] - first, offs[1:] != offs[:-1])

    def flags_flat(
        self, codes: npt.NDArray[np.integer[Any]], lens: npt.NDArray[np.int64]
    ) -> Eligibility:
        """Flags from the flattened codes of all trades and each trade's number of codes."""
        if len(codes) == 0:
            return Eligibility(np.full(len(lens), ALL_FLAGS, dtype=np.uint8), 0)
        starts = np.concatenate(([0], np.cumsum(lens)[:-1]))
        return self._from_codes(codes, starts, lens > 0)

    def _from_codes(
        self,
        codes: npt.NDArray[np.integer[Any]],
        starts: npt.NDArray[np.integer[Any]],
        has: npt.NDArray[np.bool_],
    ) -> Eligibility:
        """``codes``: every trade's codes, flattened (at least one); ``starts``: where each
        trade's codes begin; ``has``: the trades with at least one code."""
        flags = np.full(len(starts), ALL_FLAGS, dtype=np.uint8)
        if int(codes.min()) >= 0 and int(codes.max()) < _TABLE_SIZE:
            bits = self._lookup[codes]
        else:
            inside = (codes >= 0) & (codes < _TABLE_SIZE)
            bits = np.where(inside, self._lookup[np.where(inside, codes, 0)], _UNKNOWN)
        # OR over each trade's codes: the bits it loses, and whether any code was unknown
        per_trade = np.bitwise_or.reduceat(bits, starts[has])
        flags[has] = ALL_FLAGS & ~per_trade
        return Eligibility(flags, int(np.count_nonzero(per_trade & _UNKNOWN)))


def load_response(body: Mapping[str, Any] | None = None) -> EligibilityRules:
    """Rules from a live REST response body, or the bundled copy when ``body`` is None."""
    if body is not None:
        return EligibilityRules.from_response(body, source="rest")
    return bundled_rules()


def bundled_rules() -> EligibilityRules:
    """Rules from ``signalstack/marketdata/data/conditions.json`` (a saved REST response)."""
    from signalstack.marketdata.conditions import bundled_conditions_response

    return EligibilityRules.from_response(bundled_conditions_response(), source="bundled")


def _object_array(conditions: Any) -> npt.NDArray[Any]:
    """A 1-d object array of per-trade lists (never a 2-d array of equal-length lists)."""
    if isinstance(conditions, np.ndarray) and conditions.dtype == object and conditions.ndim == 1:
        return conditions
    values = getattr(conditions, "to_numpy", None)
    if values is not None:
        arr = values(dtype=object)
        if arr.ndim == 1:
            return arr  # type: ignore[no-any-return]
    seq = list(conditions)
    out = np.empty(len(seq), dtype=object)
    for i, v in enumerate(seq):
        out[i] = v
    return out
