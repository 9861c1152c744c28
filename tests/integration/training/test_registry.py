"""The champion gate end to end on the real MLflow server and a real store: candidates become
registered versions, the alias `champion` moves only on a promotion, and every decision is
visible in MLflow (version tags, run tags, the run's decisions/<name>.json) and in the store
(model_decisions always, model_registry for the version the alias points at)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow as ml
import numpy as np
import pandas as pd
import pytest

from signalstack.devstack import MlflowServer
from signalstack.store.duckdb import DuckDBStore
from signalstack.training.registry import ModelRegistry, decide

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASELINES = {"majority": 0.333, "persistence": 0.351, "stratified": 0.336}
MARGIN = 0.02


@pytest.fixture
def tracking(mlflow: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The fluent API (start_run, log_model) pointed at the session's server, reset after."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow.tracking_uri)
    ml.set_tracking_uri(mlflow.tracking_uri)
    ml.set_experiment(f"registry-{uuid.uuid4().hex[:8]}")
    try:
        yield mlflow.tracking_uri
    finally:
        ml.set_tracking_uri(None)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    s = DuckDBStore(str(tmp_path / "store.duckdb"))
    s.migrate()
    try:
        yield s
    finally:
        s.close()


def fake_bundle(root: Path, tag: str) -> Path:
    """A directory shaped like a bundle (bundle.json and a model file): what the registry
    moves around, without a model behind it."""
    d = root / f"bundle-{tag}"
    d.mkdir()
    (d / "bundle.json").write_text(
        json.dumps({"name": "direction", "feature_set_version": 1, "tag": tag})
    )
    (d / "model.onnx").write_bytes(b"\x00not-a-model" + tag.encode())
    return d


def examples() -> tuple[pd.DataFrame, pd.DataFrame]:
    x = pd.DataFrame({"ret_1m": [0.001, -0.002], "vol_5m": [0.01, np.nan]})
    y = pd.DataFrame({"down": [0.2, 0.5], "flat": [0.5, 0.3], "up": [0.3, 0.2]})
    return x, y


def registry_rows(store: DuckDBStore) -> list[tuple[Any, ...]]:
    rows = store._sql(
        "SELECT model_name, alias, version, run_id FROM model_registry ORDER BY model_name"
    )
    return [tuple(r) for r in rows]


def candidate(
    registry: ModelRegistry, name: str, bundle: Path, value: float
) -> tuple[str, str, bool]:
    """One training run: log the candidate, gate it against the current champion (whose
    holdout value the caller would compute; here: the value recorded on its version), apply."""
    x, y = examples()
    champ = registry.champion(name)
    champ_value = None
    if champ is not None:
        mv = registry.client.get_model_version(name, champ.version)
        champ_value = float(mv.tags["gate_candidate"])
    with ml.start_run() as run:
        version = registry.log_candidate(name, bundle, x, y)
        d = decide(
            name, "balanced_accuracy", value, BASELINES, champ_value, MARGIN,
            champion_version=None if champ is None else champ.version,
        )  # fmt: skip
        registry.apply(name, version, run.info.run_id, d, {"balanced_accuracy": value})
    return version, run.info.run_id, d.promote


def test_a_worse_candidate_leaves_the_champion_a_better_one_moves_it(
    tracking: str, store: DuckDBStore, tmp_path: Path
) -> None:
    name = f"direction-{uuid.uuid4().hex[:8]}"
    registry = ModelRegistry(tracking, store=store)
    assert registry.champion(name) is None  # no registered model yet
    assert registry.champion_bundle(name, tmp_path / "none") is None

    v1, run1, promoted = candidate(registry, name, fake_bundle(tmp_path, "1"), 0.412)
    assert promoted
    champ = registry.champion(name)
    assert champ is not None and (champ.version, champ.run_id) == (v1, run1)
    assert champ.uri == f"models:/{name}@champion"
    assert registry_rows(store) == [(name, "champion", v1, run1)]
    got = registry.champion_bundle(name, tmp_path / "dl1")
    assert got is not None and json.loads((got / "bundle.json").read_text())["tag"] == "1"
    assert (got / "model.onnx").read_bytes() == b"\x00not-a-model1"

    v2, run2, promoted = candidate(registry, name, fake_bundle(tmp_path, "2"), 0.420)
    assert not promoted  # beats the baselines, not the champion by the margin
    champ = registry.champion(name)
    assert champ is not None and champ.version == v1
    assert registry_rows(store) == [(name, "champion", v1, run1)]

    v3, run3, promoted = candidate(registry, name, fake_bundle(tmp_path, "3"), 0.440)
    assert promoted
    champ = registry.champion(name)
    assert champ is not None and (champ.version, champ.run_id) == (v3, run3)
    assert registry_rows(store) == [(name, "champion", v3, run3)]
    got = registry.champion_bundle(name, tmp_path / "dl3")
    assert got is not None and json.loads((got / "bundle.json").read_text())["tag"] == "3"
    assert len({v1, v2, v3}) == 3

    # every decision in MLflow: on the version, on the run, and as the run's JSON artifact
    client = registry.client
    for version, run_id, outcome in ((v1, run1, "promoted"), (v2, run2, "refused"),
                                     (v3, run3, "promoted")):  # fmt: skip
        tags = client.get_model_version(name, version).tags
        assert tags["decision"] == outcome
        assert tags["gate_metric"] == "balanced_accuracy"
        assert tags["gate_baseline.persistence"] == "0.351"
        run_tags = client.get_run(run_id).data.tags
        assert run_tags[f"decision.{name}"] == outcome
        assert run_tags[f"decision_reason.{name}"] == tags["decision_reason"]
        record = ml.artifacts.load_dict(f"runs:/{run_id}/decisions/{name}.json")
        assert (record["decision"], record["version"], record["run_id"]) == (
            outcome, version, run_id,
        )  # fmt: skip
    reason2 = client.get_model_version(name, v2).tags["decision_reason"]
    assert f"not champion v{v1} (0.412) by 0.020: champion stays v{v1}" in reason2

    # and in the store, one row per version
    decisions = store.model_decisions(name)
    assert list(decisions["version"]) == [v1, v2, v3]
    assert list(decisions["decision"]) == ["promoted", "refused", "promoted"]
    assert list(decisions["run_id"]) == [run1, run2, run3]
    assert decisions["champion_version"].tolist() == [None, v1, v1]
    assert decisions["candidate_value"].tolist() == [0.412, 0.420, 0.440]
    assert decisions["baselines"].iloc[1] == BASELINES
    assert decisions["reason"].iloc[1] == reason2


def test_a_candidate_below_its_baselines_is_refused_with_no_champion(
    tracking: str, store: DuckDBStore, tmp_path: Path
) -> None:
    name = f"regime-{uuid.uuid4().hex[:8]}"
    registry = ModelRegistry(tracking, store=store)
    version, run_id, promoted = candidate(registry, name, fake_bundle(tmp_path, "x"), 0.36)
    assert not promoted
    assert registry.champion(name) is None  # the model exists, the alias does not
    assert registry.champion_bundle(name, tmp_path / "dl") is None
    assert registry_rows(store) == []
    decisions = store.model_decisions(name)
    assert list(decisions["decision"]) == ["refused"]
    assert decisions["reason"].iloc[0] == (
        "balanced_accuracy 0.360 does not beat persistence 0.351 by 0.020 "
        "(other baselines: majority 0.333, stratified 0.336): refused, no champion yet"
    )
    tags = registry.client.get_model_version(name, version).tags
    assert tags["decision"] == "refused"
    assert registry.client.get_run(run_id).data.tags[f"decision.{name}"] == "refused"


def xgboost_bundle(root: Path, seed: int) -> tuple[Path, pd.DataFrame]:
    """A real regime bundle: a tiny XGBoost classifier on feature set 1 (booster JSON)."""
    import xgboost as xgb

    from signalstack.inference.bundle import BundleMeta, save_bundle
    from signalstack.inference.inputs import Scaler, input_spec

    spec = input_spec(1)
    rng = np.random.default_rng(seed)
    cols = list(spec.feature_columns)
    feats = pd.DataFrame(np.abs(rng.normal(1.0, 0.3, size=(120, len(cols)))), columns=cols)
    feats.iloc[:5, 0] = np.nan  # early-session gaps go through the scaler's missing indicator
    raw = spec.transform(feats)
    scaler = Scaler.fit(raw)
    y = rng.integers(0, 3, len(feats))
    model = xgb.XGBClassifier(n_estimators=4, max_depth=2, n_jobs=1, random_state=seed)
    model.fit(scaler.transform(raw), y)
    meta = BundleMeta.for_model(
        name="regime", kind="xgboost", feature_set_version=1, scaler=scaler,
        classes=("calm", "trending", "volatile"), psi_reference={}, training={"seed": seed},
        format="xgboost-json",
    )  # fmt: skip
    model_bytes = bytes(model.get_booster().save_raw(raw_format="json"))
    return save_bundle(root / f"bundle-{seed}", meta, model_bytes), feats


def test_the_champion_loads_as_a_pyfunc_and_as_a_bundle(
    tracking: str, store: DuckDBStore, tmp_path: Path
) -> None:
    from signalstack.inference.bundle import load_bundle

    name = f"regime-{uuid.uuid4().hex[:8]}"
    registry = ModelRegistry(tracking, store=store)
    bundle_dir, feats = xgboost_bundle(tmp_path, seed=3)
    want = load_bundle(bundle_dir).predict(feats)
    x = feats.head(8)
    with ml.start_run() as run:  # the output example as Bundle.predict gives it
        version = registry.log_candidate(name, bundle_dir, x, want[:8])
        d = decide(name, "balanced_accuracy", 0.6, BASELINES, None, MARGIN)
        registry.apply(name, version, run.info.run_id, d, {"balanced_accuracy": 0.6})

    model = ml.pyfunc.load_model(f"models:/{name}@champion")
    schema = model.metadata.get_input_schema()
    assert schema.input_names() == [*feats.columns, "feature_set_version"]
    assert model.metadata.get_output_schema().input_names() == ["calm", "trending", "volatile"]
    got = model.predict(feats.assign(feature_set_version=1))
    assert list(got.columns) == ["calm", "trending", "volatile"]
    np.testing.assert_allclose(got.to_numpy(), want, rtol=0, atol=1e-12)
    # the pyfunc, like the bundle, is never fed features of another feature set
    with pytest.raises(Exception, match="feature_set_version 2"):
        model.predict(feats.assign(feature_set_version=2))
    with pytest.raises(Exception, match="feature_set_version"):
        model.predict(feats)

    downloaded = registry.champion_bundle(name, tmp_path / "dl")
    assert downloaded is not None
    np.testing.assert_allclose(load_bundle(downloaded).predict(feats), want, rtol=0, atol=0)


def test_a_download_resolves_through_the_registrys_own_server(
    tracking: str, store: DuckDBStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not through MLflow's process-wide default: a process whose global tracking URI points
    elsewhere (the drift job, serving) still gets the bundle, and creates no ./mlflow.db."""
    name = f"regime-{uuid.uuid4().hex[:8]}"
    registry = ModelRegistry(tracking, store=store)
    from signalstack.inference.bundle import load_bundle

    bundle_dir, feats = xgboost_bundle(tmp_path, seed=4)
    x = feats.head(4)
    with ml.start_run():
        version = registry.log_candidate(name, bundle_dir, x, load_bundle(bundle_dir).predict(x))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ml.set_tracking_uri("sqlite:///elsewhere.db")  # lazily created only if something uses it
    got = registry.download_bundle(name, version, tmp_path / "dl")
    assert (got / "bundle.json").is_file()
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "elsewhere.db").exists()
