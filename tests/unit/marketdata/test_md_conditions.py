"""Condition table: consolidated update rules, AND across conditions, unknown codes reported."""

from __future__ import annotations

import pytest

from signalstack.marketdata.conditions import ConditionTable, load_bundled_conditions


@pytest.fixture(scope="module")
def table() -> ConditionTable:
    return load_bundled_conditions()


def test_bundled_table_has_the_glossary_rules(table: ConditionTable) -> None:
    assert table.source == "bundled" and len(table) == 33
    for code in (15, 16):  # official open/close: dropped entirely
        assert not table.updates_volume([code]) and not table.updates_open_close([code])
    for code in (2, 7, 12, 13, 20, 21, 37, 52, 53):  # volume only
        assert table.updates_volume([code]) and not table.updates_high_low([code])
        assert not table.updates_open_close([code])
    for code in (5, 10, 22, 29, 33):  # high/low and volume, not last
        assert table.updates_high_low([code]) and not table.updates_open_close([code])
    assert table.updates_open_close([38]) and not table.updates_volume([38])
    for code in (0, 14, 41):
        assert table.updates_volume([code]) and table.updates_open_close([code])


def test_rules_and_across_conditions_and_empty_is_regular(table: ConditionTable) -> None:
    assert table.updates_open_close([]) and table.updates_volume([])
    assert table.updates_open_close([14, 41])
    assert not table.updates_open_close([14, 37])  # ISO odd lot: not last-eligible
    assert table.updates_volume([14, 37])


def test_vwap_eligibility_disregards_only_odd_lot(table: ConditionTable) -> None:
    assert table.vwap_eligible([37]) and table.vwap_eligible([14, 37])
    assert not table.vwap_eligible([2]) and not table.vwap_eligible([10, 37])
    assert not table.vwap_eligible([15])


def test_unknown_code_counts_as_regular_and_is_reported(table: ConditionTable) -> None:
    assert table.unknown([14, 99, 200]) == [99, 200]
    assert table.updates_volume([99]) and table.updates_open_close([99])


def test_from_response_reads_update_rules_and_skips_non_trade_rows() -> None:
    body = {
        "results": [
            {"id": 1, "name": "a", "data_types": ["trade"],
             "update_rules": {"consolidated": {"updates_high_low": False,
                                               "updates_open_close": False,
                                               "updates_volume": True}}},
            {"id": 2, "name": "q", "data_types": ["quote"], "update_rules": {}},
        ]
    }  # fmt: skip
    t = ConditionTable.from_response(body)
    assert t.ids == frozenset({1}) and not t.updates_open_close([1])
    with pytest.raises(ValueError, match="no trade conditions"):
        ConditionTable.from_response({"results": []})
