"""Eligibility flags from the conditions table (POLYGON.md, "Trade conditions")."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalstack.features.conditions import (
    HIGH_LOW,
    LAST,
    VOLUME,
    VWAP,
    EligibilityRules,
    bundled_rules,
    load_response,
)

REG = int(VOLUME | LAST | HIGH_LOW | VWAP)


@pytest.fixture(scope="module")
def rules() -> EligibilityRules:
    return bundled_rules()


@pytest.mark.parametrize(
    ("conds", "expected"),
    [
        ([], REG),  # no conditions: regular
        ([0], REG),
        ([14, 41], REG),
        ([15], 0),  # official close: nothing
        ([16], 0),
        ([37], int(VOLUME | VWAP)),  # odd lot: volume, and VWAP once 37 is disregarded
        ([14, 37], int(VOLUME | VWAP)),
        ([2], int(VOLUME)),  # average price: volume only, not VWAP
        ([2, 37], int(VOLUME)),
        ([12], int(VOLUME)),  # Form T
        ([10], int(VOLUME | HIGH_LOW)),  # derivatively priced: no last, no VWAP
        ([5], int(VOLUME | HIGH_LOW)),
        ([38], int(LAST | HIGH_LOW)),  # corrected close: no volume → no VWAP
        ([999], REG),  # unknown code counts as regular
        ([10, 38], int(HIGH_LOW)),  # AND across conditions
    ],
)
def test_flags_per_trade(rules, conds, expected):
    assert rules.flags_for(conds) == expected


def test_vectorised_matches_scalar_and_counts_unknown(rules):
    rng = np.random.default_rng(7)
    pool = [[], [37], [14, 37], [2], [10], [38], [15], [999], [12, 14], (37,), [1, 2, 3]]
    conds = pd.Series([pool[i] for i in rng.integers(0, len(pool), 500)], dtype=object)
    el = rules.flags(conds)
    assert el.flags.tolist() == [rules.flags_for(list(c)) for c in conds]
    assert el.unknown_codes == sum(1 for c in conds if 999 in c)


def test_equal_length_lists_and_missing_lists(rules):
    assert rules.flags([[2], [37]]).flags.tolist() == [int(VOLUME), int(VOLUME | VWAP)]
    assert rules.flags(pd.Series([None, [15]], dtype=object)).flags.tolist() == [REG, 0]


def test_live_response_shape_is_accepted():
    body = json.loads(
        resources.files("signalstack.marketdata").joinpath("data/conditions.json").read_text()
    )
    # a live table that makes 0 volume-only (a change we must pick up, not hard-code)
    for r in body["results"]:
        if r["id"] == 0:
            r["update_rules"]["consolidated"]["updates_open_close"] = False
    live = load_response(body)
    assert live.source == "rest"
    assert live.flags_for([0]) == int(VOLUME | HIGH_LOW)
    assert bundled_rules().flags_for([0]) == REG
    # non-trade conditions are ignored
    quote_only = {"results": [{"id": 3, "data_types": ["quote"], "update_rules": {}}]}
    assert EligibilityRules.from_response(quote_only).rules == {}


def _reference(rules: EligibilityRules, codes: list[int | None] | None) -> tuple[int, bool]:
    """One trade, the rules read plainly: AND of what each code keeps; unknown: not in them."""
    flags, unknown = REG, False
    for c in codes or []:
        if c is None or c not in rules.rules:
            unknown = True
            continue
        hl, last, vol = rules.rules[c]
        keep = (int(HIGH_LOW) if hl else 0) | (int(LAST) if last else 0)
        keep |= int(VOLUME) if vol else 0
        if c == 37 or (last and vol):
            keep |= int(VWAP)
        flags &= keep
    return flags, unknown


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.one_of(
            st.none(),
            st.lists(st.one_of(st.none(), st.sampled_from([0, 2, 10, 12, 14, 37, 41, 300, -4]))),
        ),
        max_size=25,
    ),
    cut=st.tuples(st.integers(0, 25), st.integers(0, 25)),
    int32=st.booleans(),
)
def test_arrow_flags_equal_the_rules_read_plainly(rules, rows, cut, int32):
    arr = pa.array(rows, type=pa.list_(pa.int32() if int32 else pa.int64()))
    lo = min(cut[0], len(rows))
    arr = arr.slice(lo, cut[1])  # a slice: offsets that do not start at 0
    rows = rows[lo : lo + cut[1]]
    got = rules.flags(arr)
    want = [_reference(rules, r) for r in rows]
    assert got.flags.tolist() == [f for f, _ in want]
    assert got.unknown_codes == sum(u for _, u in want)
