"""Walk-forward splits with purging and an embargo: properties over random label windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalstack.config import TrainingSettings
from signalstack.training.splits import SplitConfig, walk_forward

MIN = 60_000_000_000

rows_st = st.lists(
    st.tuples(st.integers(0, 600), st.integers(1, 30)),  # decision minute, horizon minutes
    min_size=1,
    max_size=200,
)
config_st = st.builds(
    SplitConfig,
    n_splits=st.integers(1, 6),
    scheme=st.sampled_from(["expanding", "rolling"]),
    rolling_train_blocks=st.integers(1, 3),
    embargo_ns=st.integers(0, 60).map(lambda m: m * MIN),
)


@settings(max_examples=300, deadline=None)
@given(rows=rows_st, cfg=config_st)
def test_walk_forward_properties(rows: list[tuple[int, int]], cfg: SplitConfig) -> None:
    t0 = np.array([m * MIN for m, _ in rows], dtype=np.int64)
    t1 = t0 + np.array([h * MIN for _, h in rows], dtype=np.int64)
    if len(np.unique(t0)) < cfg.n_splits + 1:
        with pytest.raises(ValueError, match="cannot make"):
            walk_forward(t0, t1, cfg)
        return
    try:
        folds = walk_forward(t0, t1, cfg)
    except ValueError as e:  # only when purging and the embargo leave a fold no training row
        error = str(e)
    else:
        error = ""
    if error:
        assert "no training row left" in error
        return
    assert [f.index for f in folds] == list(range(1, cfg.n_splits + 1))
    seen: set[int] = set()
    for k, f in enumerate(folds):
        train, test = f.train, f.test
        assert len(train) and len(test)
        assert f.test_start == t0[test].min() and f.test_end == t0[test].max()
        # purged + embargoed: every training label resolved before the test block starts
        assert t1[train].max() + cfg.embargo_ns < t0[test].min()
        # no training label window (t0, t1] overlaps any test label window
        assert (t1[train][:, None] <= t0[test][None, :]).all()
        assert (t0[train] < f.test_start).all()
        # test blocks ordered and disjoint
        assert not seen & set(test.tolist())
        seen |= set(test.tolist())
        if k:
            assert folds[k - 1].test_end < f.test_start
        # purging is minimal: every earlier row that qualifies is trained on (expanding)
        if cfg.scheme == "expanding":
            eligible = np.flatnonzero((t0 < f.test_start) & (t1 + cfg.embargo_ns < f.test_start))
            assert np.array_equal(np.sort(train), eligible)
            assert f.purged == int((t0 < f.test_start).sum()) - len(train)
            if k:
                assert set(folds[k - 1].train.tolist()) <= set(train.tolist())
    # the test blocks cover every row after the first block
    first_block_end = folds[0].test_start
    assert seen == set(np.flatnonzero(t0 >= first_block_end).tolist())


def test_rolling_trains_on_the_last_blocks_only() -> None:
    t0 = np.arange(100, dtype=np.int64) * MIN
    t1 = t0 + 5 * MIN
    folds = walk_forward(t0, t1, SplitConfig(4, "rolling", rolling_train_blocks=1, embargo_ns=0))
    # 5 blocks of 20 minutes; fold k trains on block k − 1 less its last 5 minutes (purged)
    for k, f in enumerate(folds, start=1):
        assert f.train.tolist() == list(range(20 * (k - 1), 20 * k - 5))
        assert f.test.tolist() == list(range(20 * k, 20 * (k + 1)))
        assert f.purged == 5


def test_rows_sharing_a_decision_time_stay_together() -> None:
    t0 = np.repeat(np.arange(30, dtype=np.int64) * MIN, 3)  # three symbols per minute
    folds = walk_forward(t0, t0 + MIN, SplitConfig(2))
    for f in folds:
        assert set(t0[f.test].tolist()).isdisjoint(t0[f.train].tolist())
        assert len(f.test) % 3 == 0


def test_timestamps_in_any_form() -> None:
    ts = pd.Series(pd.date_range("2024-03-05 14:31", periods=40, freq="1min", tz="UTC"))
    folds = walk_forward(ts, ts + pd.Timedelta(minutes=5), SplitConfig(3, embargo_ns=2 * MIN))
    assert len(folds) == 3
    assert folds[0].test_start == ts.iloc[10].value


def test_impossible_splits_say_why() -> None:
    t0 = np.arange(10, dtype=np.int64) * MIN
    with pytest.raises(ValueError, match="cannot make 10 folds"):
        walk_forward(t0, t0 + MIN, SplitConfig(10))
    with pytest.raises(ValueError, match="no training row left"):
        walk_forward(t0, t0 + 30 * MIN, SplitConfig(2))
    with pytest.raises(ValueError, match="ends before"):
        walk_forward(t0, t0 - 1, SplitConfig(2))
    with pytest.raises(ValueError, match="scheme"):
        SplitConfig(2, "kfold")  # type: ignore[arg-type]


def test_embargo_is_sized_from_the_label_horizon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAIN_EMBARGO_HORIZONS", "1.5")
    monkeypatch.setenv("TRAIN_SPLIT_SCHEME", "rolling")
    monkeypatch.setenv("TRAIN_N_SPLITS", "3")
    cfg = SplitConfig.from_settings(TrainingSettings(), horizon_minutes=30)
    assert cfg == SplitConfig(3, "rolling", 2, 45 * MIN)
