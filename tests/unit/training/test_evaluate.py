"""Walk-forward evaluation of the three models: no fold sees past its training cut-off, the same
seed and data give the same metrics, and baselines are scored beside every fold."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from tests.unit.training.test_frames import SimFactory, garbage_after

from signalstack.inference.inputs import input_spec
from signalstack.training.evaluate import Evaluation, ModelConfigs, evaluate
from signalstack.training.frames import SimulatedData, training_frame
from signalstack.training.labels import anomaly_truth
from signalstack.training.lstm import LstmConfig
from signalstack.training.models import XgbConfig
from signalstack.training.splits import SplitConfig

pytestmark = pytest.mark.slow

SPLIT = SplitConfig(n_splits=3, embargo_ns=30 * 60 * 10**9)
CONFIGS = ModelConfigs(
    xgb=XgbConfig(n_estimators=30, max_depth=3, threads=1),
    lstm=LstmConfig(sequence_length=8, hidden_size=8, epochs=2, batch_size=128),
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _frame(sim: SimulatedData) -> pd.DataFrame:
    return training_frame(sim.store, sim.symbols, sim.start, sim.end)


def _run(name: str, sim: SimulatedData) -> Evaluation:
    frame = _frame(sim)
    truth = anomaly_truth(frame[["symbol", "ts"]], sim.anomalies)["anomaly"].to_numpy(bool)
    return evaluate(name, frame, input_spec(1), SPLIT, CONFIGS, anomaly_truth=truth)


def _fingerprint(name: str, ev: Evaluation, fold: int) -> Any:
    """What fold ``fold`` fitted: the scaler and the model's parameters, exactly."""
    f = ev.folds[fold]
    if name == "regime":
        model: Any = bytes(f.model.get_booster().save_raw("json"))
    elif name == "direction":
        model = [v.detach().numpy().tobytes() for v in f.model.state_dict().values()]
    else:
        probe = np.random.default_rng(1).normal(size=(64, f.scaler.width)).astype(np.float32)
        model = f.model.score_samples(probe).tobytes()
    return f.scaler, model, f.train.tobytes()


@pytest.mark.parametrize("name", ["regime", "direction", "anomaly"])
def test_corrupting_every_row_after_a_folds_cutoff_changes_nothing_it_fitted(
    sim_store: SimFactory, name: str
) -> None:
    clean = sim_store(seed=5, days=3, symbols=("AAA", "BBB"), trades_per_day=5_000)
    dirty = sim_store(seed=5, days=3, symbols=("AAA", "BBB"), trades_per_day=5_000)
    before = _run(name, clean)
    fold = 1  # the second fold: it has a later fold to show the corruption is felt
    f = before.folds[fold]
    frame = _frame(clean)
    # the fold's training cut-off: the end of the last label window it trained on
    end_col = "ts" if name == "anomaly" else f"{name}_end"
    cutoff = pd.Timestamp(frame[end_col].to_numpy()[f.train].max())
    assert cutoff < frame["ts"].to_numpy()[f.test].min()
    garbage_after(dirty, cutoff)
    after = _run(name, dirty)
    assert _fingerprint(name, after, fold) == _fingerprint(name, before, fold)
    # the corruption is real: the last fold (which trains past the cut-off) fits another model
    assert _fingerprint(name, after, -1) != _fingerprint(name, before, -1)


def test_same_seed_same_data_same_metrics(sim_store: SimFactory) -> None:
    sim = sim_store(seed=6, days=3, symbols=("AAA", "BBB"), trades_per_day=5_000)
    for name in ("regime", "direction", "anomaly"):
        a, b = _run(name, sim), _run(name, sim)
        assert a.aggregate == b.aggregate, name
        assert a.baseline_aggregate == b.baseline_aggregate, name
        np.testing.assert_array_equal(a.holdout.prediction, b.holdout.prediction)


def test_every_fold_scores_the_model_beside_its_baselines_on_the_same_rows(
    sim_store: SimFactory,
) -> None:
    sim = sim_store(seed=7, days=3, symbols=("AAA", "BBB"), trades_per_day=5_000)
    ev = _run("regime", sim)
    assert len(ev.folds) == SPLIT.n_splits
    for f in ev.folds:
        assert set(f.baselines) == {"majority", "stratified", "persistence"}
        for m in (f.metrics, *f.baselines.values()):
            assert m["n"] == len(f.test)
            assert {"balanced_accuracy", "macro_f1", "log_loss", "roc_auc_ovr"} <= set(m)
        # the majority baseline predicts one class: balanced accuracy 1 / classes present
        present = len(np.unique(_frame(sim)["regime"].to_numpy()[f.test]))
        assert f.baselines["majority"]["balanced_accuracy"] == pytest.approx(1 / present)
    an = _run("anomaly", sim)
    assert set(an.holdout.baselines) == {"zscore"}
    assert {"precision_at_k", "recall_at_k", "pr_auc"} <= set(an.aggregate)
