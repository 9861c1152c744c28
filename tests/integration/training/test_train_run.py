"""`signalstack train` end to end on the real MLflow server: simulated sessions → the three
models → walk-forward metrics beside baselines → bundles → registered versions → the gate.

- the regime model beats the majority baseline on data with known regimes; on a pure random
  walk the direction model does not beat its baselines and the gate refuses it;
- over three runs sharing one holdout, a worse run leaves ``champion`` where it is and a better
  one moves it, both decisions visible in MLflow and in the store;
- the CLI's exit status says whether a champion moved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow as ml
import numpy as np
import pandas as pd
import pytest
from tests.unit.training.test_sources import END as Y_END
from tests.unit.training.test_sources import FIRST_OPEN as Y_FIRST_OPEN
from tests.unit.training.test_sources import SYMBOLS as Y_SYMBOLS
from tests.unit.training.test_sources import Yahoo, yahoo  # noqa: F401 - the replay fixture

from signalstack.config import MlflowSettings, Settings, TrainingSettings
from signalstack.devstack import MlflowServer
from signalstack.features.columns import FEATURE_COLUMNS
from signalstack.features.sessions import session_index
from signalstack.inference.bundle import load_bundle
from signalstack.store.duckdb import DuckDBStore
from signalstack.training.frames import LabelSpec, simulate_into_store, training_frame
from signalstack.training.labels import regime_truth
from signalstack.training.run import train
from signalstack.training.sources import SimulatorSource, StoreSource
from signalstack.training.splits import SplitConfig, walk_forward

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SYMBOLS = ("AAA", "BBB", "CCC")
FAST = {"lstm_epochs": 3, "lstm_hidden_size": 16, "sequence_length": 15, "threads": 1}


def settings(prefix: str, **training: object) -> Settings:
    return Settings(
        training=TrainingSettings(**{**FAST, **training}),  # type: ignore[arg-type]
        mlflow=MlflowSettings(model_prefix=prefix),
    )


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}-"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    s = DuckDBStore(str(tmp_path / "store.duckdb"))
    s.migrate()
    try:
        yield s
    finally:
        s.close()


def test_regime_beats_majority_and_a_random_walk_direction_model_is_refused(
    mlflow: MlflowServer, prefix: str, store: DuckDBStore
) -> None:
    s = settings(prefix)
    regimes = SimulatorSource(days=4, symbols=SYMBOLS, seed=5, trades_per_day=8_000)
    res = train(s, regimes, SYMBOLS, None, None, models=("regime",), store=store,
                tracking_uri=mlflow.tracking_uri, experiment=f"{prefix}regimes")  # fmt: skip
    regime = res.models["regime"]
    hold = regime.evaluation.holdout
    # the margin this test states: 0.10 of balanced accuracy over the majority class (chance)
    assert (
        hold.metrics["balanced_accuracy"] >= hold.baselines["majority"]["balanced_accuracy"] + 0.10
    )
    assert regime.evaluation.aggregate["balanced_accuracy"] >= (
        regime.evaluation.baseline_aggregate["majority"]["balanced_accuracy"] + 0.10
    )
    assert regime.decision is not None and regime.decision.promote, regime.decision
    # and against the simulator's own per-minute regimes (the ground truth behind the labels)
    frame = regimes.frame(SYMBOLS, None, None, labels=LabelSpec(), sessions=session_index())
    truth = regime_truth(regimes.truth().regimes, frame, LabelSpec().regime.horizon_minutes)
    rows = hold.test[truth.notna().to_numpy()[hold.test]]
    true = truth.to_numpy()[rows].astype(int)
    pred = hold.prediction[np.searchsorted(hold.test, rows)].argmax(axis=1)
    recall = [float((pred[true == k] == k).mean()) for k in np.unique(true)]
    assert np.mean(recall) >= 1 / 3 + 0.10, recall  # balanced accuracy against the truth

    walk = SimulatorSource(days=4, symbols=SYMBOLS, seed=5, trades_per_day=8_000, random_walk=True)
    assert set(walk.truth().regimes["regime"]) == {"calm"}
    res = train(s, walk, SYMBOLS, None, None, models=("direction",), store=store,
                tracking_uri=mlflow.tracking_uri, experiment=f"{prefix}walk")  # fmt: skip
    direction = res.models["direction"]
    d = direction.decision
    assert d is not None and not d.promote
    hold = direction.evaluation.holdout
    best = max(b["balanced_accuracy"] for b in hold.baselines.values())
    assert hold.metrics["balanced_accuracy"] < best + s.training.gate_margin
    assert "does not beat" in d.reason
    client = ml.MlflowClient(mlflow.tracking_uri, mlflow.tracking_uri)
    mv = client.get_model_version(f"{prefix}direction", str(direction.version))
    assert mv.tags["decision"] == "refused"
    assert not client.get_registered_model(f"{prefix}direction").aliases  # no champion
    walk.close()
    regimes.close()


def _holdout_start(frame: pd.DataFrame, s: Settings) -> pd.Timestamp:
    spec = LabelSpec.from_settings(s.training)
    lab = frame[frame["regime"].notna()]
    folds = walk_forward(
        lab["ts"], lab["regime_end"], SplitConfig.from_settings(s.training, spec.horizon_minutes)
    )
    return pd.Timestamp(folds[-1].test_start, tz="UTC")


def _copy(src: DuckDBStore, dst: DuckDBStore, lo: pd.Timestamp, hi: pd.Timestamp,
          scramble_before: pd.Timestamp | None, share: float) -> None:  # fmt: skip
    """Bars as they are; feature rows stamped before ``scramble_before`` shuffled among
    themselves for a ``share`` of them (features no longer match their rows' labels, which are
    computed from the untouched bars)."""
    dst.write_bars(src.bars(SYMBOLS, lo, hi))
    feats = src.training_frame(SYMBOLS, lo, hi, as_of=hi)
    if scramble_before is not None:
        rng = np.random.default_rng(3)
        early = np.flatnonzero((feats["ts"] < scramble_before).to_numpy())
        pick = rng.choice(early, size=int(share * len(early)), replace=False)
        cols = list(FEATURE_COLUMNS)
        feats.loc[feats.index[pick], cols] = feats.loc[
            feats.index[rng.permutation(pick)], cols
        ].to_numpy()
    dst.write_features(feats)


def test_a_worse_run_keeps_the_champion_and_a_better_one_moves_it(
    mlflow: MlflowServer, prefix: str, tmp_path: Path
) -> None:
    s = settings(prefix)
    clean = DuckDBStore()
    clean.migrate()
    sim = simulate_into_store(clean, days=4, symbols=SYMBOLS, seed=5, trades_per_day=8_000)
    lo, hi = sim.start, sim.end
    cut = _holdout_start(training_frame(clean, SYMBOLS, lo, hi), s)
    stores = {}
    for name, share in (("noisy", 0.6), ("broken", 1.0), ("clean", 0.0)):
        st = DuckDBStore(str(tmp_path / f"{name}.duckdb"))
        st.migrate()
        _copy(clean, st, lo, hi, cut if share else None, share)
        stores[name] = st
    mirror = DuckDBStore(str(tmp_path / "mirror.duckdb"))
    mirror.migrate()
    runs = {}
    for name in ("noisy", "broken", "clean"):  # in this order: v1, v2, v3
        res = train(s, StoreSource(stores[name]), SYMBOLS, lo, hi, models=("regime",),
                    store=mirror, tracking_uri=mlflow.tracking_uri,
                    experiment=f"{prefix}gate")  # fmt: skip
        runs[name] = res.models["regime"]
    noisy, broken, better = runs["noisy"], runs["broken"], runs["clean"]
    # one holdout: the same rows and labels in every run
    for r in (broken, better):
        np.testing.assert_array_equal(r.evaluation.holdout.test, noisy.evaluation.holdout.test)
    assert noisy.decision is not None and noisy.decision.promote, noisy.decision
    assert broken.decision is not None and not broken.decision.promote, broken.decision
    assert broken.decision.champion_version == noisy.version == "1"
    assert better.decision is not None and better.decision.promote, better.decision
    assert better.decision.champion_version == "1" and better.version == "3"
    # the champion was scored on the holdout, beside the candidate
    assert better.champion_metrics["balanced_accuracy"] == pytest.approx(
        noisy.evaluation.holdout.metrics["balanced_accuracy"], abs=1e-6
    )

    client = ml.MlflowClient(mlflow.tracking_uri, mlflow.tracking_uri)
    model = f"{prefix}regime"
    assert client.get_model_version_by_alias(model, "champion").version == "3"
    tags = {v: client.get_model_version(model, v).tags["decision"] for v in ("1", "2", "3")}
    assert tags == {"1": "promoted", "2": "refused", "3": "promoted"}
    run_tags = client.get_run(broken.run_id).data.tags
    assert run_tags[f"decision.{model}"] == "refused"
    assert "champion" in run_tags[f"decision_reason.{model}"]

    decisions = mirror.model_decisions(model).sort_values("version")
    assert list(decisions["decision"]) == ["promoted", "refused", "promoted"]
    rows = mirror._sql(
        "SELECT version, run_id FROM model_registry WHERE model_name = ? AND alias = 'champion'",
        [model],
    )
    assert [tuple(r) for r in rows] == [("3", better.run_id)]
    # the registered champion is the bundle serving loads: it predicts the holdout as scored
    bundle = load_bundle(_download(client, model, "3", tmp_path))
    frame = StoreSource(stores["clean"]).frame(
        SYMBOLS, lo, hi, labels=LabelSpec.from_settings(s.training), sessions=session_index()
    )
    held = better.evaluation.holdout.test
    np.testing.assert_allclose(
        bundle.predict(frame[list(bundle.meta.feature_columns)].iloc[held]),
        better.evaluation.holdout.prediction,
        atol=1e-5,
    )
    for st in (*stores.values(), mirror, clean):
        st.close()


def _download(client: ml.MlflowClient, model: str, version: str, tmp: Path) -> Path:
    from signalstack.training.registry import ModelRegistry

    return ModelRegistry(client.tracking_uri).download_bundle(model, version, tmp / "dl")


def test_the_cli_exit_status_says_whether_a_champion_moved(
    mlflow: MlflowServer, prefix: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STORE_", "MLFLOW_", "TRAIN_"))}
    env.update(
        MLFLOW_TRACKING_URI=mlflow.tracking_uri,
        MLFLOW_MODEL_PREFIX=prefix,
        STORE_DUCKDB_PATH=str(tmp_path / "cli.duckdb"),
        TRAIN_THREADS="1",
        TRAIN_SEED="5",  # the simulator's seed too: the data of the first test, which promotes
    )
    args = [sys.executable, "-m", "signalstack", "train", "--data-source", "simulator",
            "--days", "4", "--symbols", ",".join(SYMBOLS), "--trades-per-day", "8000",
            "--model", "xgboost", "--summary-json", str(tmp_path / "summary.json")]  # fmt: skip
    first = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "promoted" in first.stdout
    before = json.loads((tmp_path / "summary.json").read_text())
    # the same data and seed again: the same model, which cannot beat itself by the margin
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 6, again.stderr[-3000:]
    assert "refused" in again.stdout
    after = json.loads((tmp_path / "summary.json").read_text())
    assert after["models"]["regime"]["decision"]["promote"] is False
    # same seed, same data: the same dataset digest and the same metrics, through MLflow and all
    assert after["dataset_digest"] == before["dataset_digest"]
    for key in ("cv", "holdout", "baselines_cv", "baselines_holdout"):
        assert after["models"]["regime"][key] == before["models"]["regime"][key], key
    # the champion (v1, through its ONNX bundle) scores the holdout as v1 did when trained
    champion = after["models"]["regime"]["champion_holdout"]
    assert champion == pytest.approx(before["models"]["regime"]["holdout"], rel=1e-6)


def test_yfinance_bars_train_feature_set_2_models_that_refuse_feature_set_1(
    mlflow: MlflowServer,
    prefix: str,
    store: DuckDBStore,
    yahoo: Yahoo,  # noqa: F811 - the fixture imported above
) -> None:
    source, _ = yahoo
    s = settings(prefix, n_splits=3)
    res = train(s, source, Y_SYMBOLS, Y_FIRST_OPEN, Y_END, store=store,
                tracking_uri=mlflow.tracking_uri, experiment=f"{prefix}yf")  # fmt: skip
    assert res.source == "yfinance" and res.feature_set_version == 2
    client = ml.MlflowClient(mlflow.tracking_uri, mlflow.tracking_uri)
    assert client.get_run(res.run_id).data.params["feature_set_version"] == "2"
    # no labelled anomalies in market history: the anomaly model cannot be scored, so it is
    # registered (for the record) but never made champion
    anomaly = res.models["anomaly"].decision
    assert anomaly is not None and not anomaly.promote
    assert "no labelled anomalies" in anomaly.reason
    # feature set 2 has its own registered models (and champions): never in feature set 1's way
    assert {m.version and n for n, m in res.models.items()} == {"regime", "direction", "anomaly"}
    assert not client.search_model_versions(f"name='{prefix}regime'")
    bundle = load_bundle(_download(client, f"{prefix}regime-fs2", "1", Path(store.path).parent))
    assert bundle.meta.feature_set_version == 2 and "range_1m" in bundle.meta.feature_columns
    cols = list(bundle.meta.feature_columns)
    v1 = pd.DataFrame(np.ones((2, len(cols))), columns=cols).assign(feature_set_version=1)
    with pytest.raises(ValueError, match=r"feature_set_version|feature set"):
        bundle.predict(v1)
    # the anomaly bundle carries its alert threshold: the 99th percentile of its training scores
    dl = Path(store.path).parent / "dl-anomaly"
    anomaly_bundle = load_bundle(_download(client, f"{prefix}anomaly-fs2", "1", dl))
    threshold = anomaly_bundle.meta.training["score_threshold"]
    frame = source.frame(
        Y_SYMBOLS, Y_FIRST_OPEN, Y_END, labels=LabelSpec.from_settings(s.training),
        sessions=session_index(),
    )  # fmt: skip
    scores = anomaly_bundle.predict(frame[list(anomaly_bundle.meta.feature_columns)])
    assert 0.001 < float(np.mean(scores > threshold)) < 0.05


def test_a_champion_trained_inside_the_candidates_holdout_is_not_compared_in_sample(
    mlflow: MlflowServer, prefix: str, store: DuckDBStore
) -> None:
    s = settings(prefix)
    sim = simulate_into_store(store, days=4, symbols=SYMBOLS, seed=5, trades_per_day=8_000)
    later = train(s, StoreSource(store), SYMBOLS, sim.start, sim.end, models=("regime",),
                  tracking_uri=mlflow.tracking_uri, experiment=f"{prefix}overlap")  # fmt: skip
    assert later.models["regime"].decision is not None
    assert later.models["regime"].decision.promote
    # a window ending a session earlier: its holdout lies inside what the champion trained on
    earlier_end = sim.end - pd.Timedelta(days=1)
    res = train(s, StoreSource(store), SYMBOLS, sim.start, earlier_end, models=("regime",),
                tracking_uri=mlflow.tracking_uri, experiment=f"{prefix}overlap")  # fmt: skip
    d = res.models["regime"].decision
    assert d is not None and not d.promote
    assert "inside this holdout" in d.reason and "champion stays v1" in d.reason
