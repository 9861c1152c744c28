"""The sink's lag and broker reachability from librdkafka statistics recorded from a real
broker (data/record_stats.py): trades/0 committed to the end, trades/1 to 60 of 100, trades/2
and features/0 never; then the same consumer with its broker SIGKILLed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from signalstack.observability.kafka_stats import (
    consumer_lag,
    group_steady,
    group_up,
    partition_lag,
)

DATA = Path(__file__).parent / "data"


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DATA / f"stats_{name}.json").read_text())
    return doc


@pytest.fixture
def steady() -> dict[str, Any]:
    return _load("steady")


def _owned(*keys: tuple[str, int]) -> frozenset[tuple[str, int]]:
    return frozenset(keys)


def test_lag_is_log_end_minus_committed_and_the_whole_log_when_nothing_is_committed(
    steady: dict[str, Any],
) -> None:
    owned = _owned(("trades", 0), ("trades", 1), ("trades", 2), ("features", 0))
    lag = consumer_lag(steady, owned, ("trades", "features", "predictions"))
    # trades: 0 + 40 + 100 (never committed: all of it); features: 5; nothing owned: 0.
    assert lag == {"trades": 140, "features": 5, "predictions": 0}


def test_a_fully_committed_partition_has_no_lag_whatever_the_consumer_position(
    steady: dict[str, Any],
) -> None:
    """The old gauge took (high watermark - position) and the whole high watermark when the
    position was unknown, as it is after a rebalance until a message arrives: a partition
    consumed and committed to its end showed its whole log as lag."""
    p = steady["topics"]["trades"]["partitions"]["0"]
    assert p["committed_offset"] == p["hi_offset"] == 100
    p["app_offset"] = -1001  # no message returned since the (re)assignment
    assert partition_lag(p) == 0
    assert consumer_lag(steady, _owned(("trades", 0)), ("trades",)) == {"trades": 0}


def test_only_owned_partitions_count(steady: dict[str, Any]) -> None:
    assert consumer_lag(steady, _owned(("trades", 1)), ("trades", "features")) == {
        "trades": 40,
        "features": 0,
    }


def test_a_topic_with_an_owned_partition_of_unknown_offsets_is_left_out(
    steady: dict[str, Any],
) -> None:
    p = steady["topics"]["trades"]["partitions"]["2"]
    p["hi_offset"] = p["ls_offset"] = -1001  # no fetch response yet
    assert partition_lag(p) is None
    owned = _owned(("trades", 1), ("trades", 2), ("features", 0))
    assert consumer_lag(steady, owned, ("trades", "features")) == {"features": 5}
    # A partition the statistics do not list yet (just assigned) is unknown too.
    assert consumer_lag(steady, _owned(("trades", 7)), ("trades",)) == {}


def test_the_group_is_up_with_the_broker_and_not_with_it_gone(steady: dict[str, Any]) -> None:
    down = _load("broker_down")
    assert group_up(steady) and group_steady(steady)
    assert not group_up(down) and not group_steady(down)
    assert down["cgrp"]["join_state"] == "steady"  # not yet noticed by the join state
    assert not group_up({})
