"""The champion gate's decisions in both stores (DuckDB and real TimescaleDB): a history per
model version, next to model_registry's one row per alias."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from signalstack.store import Store
from signalstack.store.base import MODEL_DECISION_COLUMNS, StoreError
from signalstack.store.duckdb import DuckDBStore
from signalstack.store.timescale import TimescaleStore

T0 = pd.Timestamp("2024-03-05 10:00:00+00:00")


@pytest.fixture(
    params=[pytest.param("duckdb"), pytest.param("timescale", marks=pytest.mark.integration)]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s: Store
    if request.param == "duckdb":
        s = DuckDBStore(str(tmp_path / "store.duckdb"))
    else:
        s = TimescaleStore(request.getfixturevalue("timescale_db").dsn)
    s.migrate()
    try:
        yield s
    finally:
        s.close()


def test_decisions_keep_a_history_per_version(store: Store) -> None:
    assert store.model_decisions().empty
    assert list(store.model_decisions().columns) == list(MODEL_DECISION_COLUMNS)
    store.record_decision(
        "direction", "1", "run-1", "promoted", "no champion yet: promoted",
        "balanced_accuracy", 0.41, {"majority": 0.333, "persistence": 0.35}, 0.02,
        decided_at=T0,
    )  # fmt: skip
    store.record_decision(
        "direction", "2", "run-2", "refused", "not champion v1 (0.410) by 0.020",
        "balanced_accuracy", 0.40, {"majority": 0.333, "persistence": math.nan}, 0.02,
        champion_version="1", champion_value=0.41, decided_at=T0 + pd.Timedelta(minutes=1),
    )  # fmt: skip
    store.record_decision(
        "regime", "1", "run-3", "refused", "candidate is not a number", "balanced_accuracy",
        math.nan, {}, 0.02, decided_at=T0,
    )  # fmt: skip

    got = store.model_decisions("direction")
    assert list(got["version"]) == ["1", "2"]
    assert list(got["decision"]) == ["promoted", "refused"]
    assert list(got["run_id"]) == ["run-1", "run-2"]
    assert got["candidate_value"].tolist() == [0.41, 0.40]
    assert got["champion_version"].tolist() == [None, "1"]
    assert math.isnan(got["champion_value"].iloc[0]) and got["champion_value"].iloc[1] == 0.41
    assert got["baselines"].iloc[0] == {"majority": 0.333, "persistence": 0.35}
    second = got["baselines"].iloc[1]
    assert second["majority"] == 0.333 and math.isnan(second["persistence"])
    assert got["margin"].tolist() == [0.02, 0.02]
    assert got["reason"].iloc[1] == "not champion v1 (0.410) by 0.020"
    assert got["decided_at"].tolist() == [T0, T0 + pd.Timedelta(minutes=1)]
    assert str(got["decided_at"].dtype) == "datetime64[ns, UTC]"

    regime = store.model_decisions("regime")
    assert len(regime) == 1 and math.isnan(regime["candidate_value"].iloc[0])
    assert regime["baselines"].iloc[0] == {}
    assert list(store.model_decisions()["model_name"]) == ["direction", "direction", "regime"]
    assert store.model_decisions("anomaly").empty


def test_deciding_again_on_a_version_replaces_its_row(store: Store) -> None:
    store.record_decision(
        "anomaly", "4", "run-a", "refused", "first", "pr_auc", 0.2, {"zscore": 0.3}, 0.01,
        decided_at=T0,
    )  # fmt: skip
    store.record_decision(
        "anomaly", "4", "run-a", "promoted", "second", "pr_auc", 0.5, {"zscore": 0.3}, 0.01,
    )  # fmt: skip
    got = store.model_decisions("anomaly")
    assert len(got) == 1
    row = got.iloc[0]
    assert (row["decision"], row["reason"], row["candidate_value"]) == ("promoted", "second", 0.5)
    assert row["decided_at"] > T0  # defaulted to now


def test_a_decision_that_is_neither_promoted_nor_refused_is_refused(store: Store) -> None:
    kept: Any = "kept"
    with pytest.raises(StoreError, match="promoted"):
        store.record_decision("regime", "1", "r", kept, "x", "m", 0.5, {}, 0.0)
    assert store.model_decisions().empty
