"""Export of the three models into bundles: parity with the training side, and the check trips."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import xgboost as xgb
from sklearn.ensemble import IsolationForest

from signalstack.inference.bundle import BundleMeta, load_bundle
from signalstack.inference.inputs import Scaler, input_spec, sequences
from signalstack.training.export import (
    TOLERANCES,
    ExportMismatch,
    export_iforest,
    export_lstm,
    export_xgboost,
    iforest_to_onnx,
    lstm_to_onnx,
)
from signalstack.training.lstm import DirectionLstm, LstmConfig, fit_lstm

N_INPUTS = len(input_spec(1).input_names)
REGIMES = ("calm", "trending", "volatile")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def scaled(n: int = 600, seed: int = 0, indicators: bool = True) -> tuple[Scaler, Any, Any]:
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(n, N_INPUTS)) * rng.uniform(0.5, 2.0, N_INPUTS)
    raw[rng.random(raw.shape) < 0.05] = np.nan
    scaler = Scaler.fit(raw, indicators=indicators)
    x = scaler.transform(raw)
    y = (np.nan_to_num(raw[:, 0]) > 0).astype(int) + (np.nan_to_num(raw[:, 1]) > 0.5)
    return scaler, x, y


def meta(
    kind: str, scaler: Scaler, length: int | None = None, fmt: str | None = None
) -> BundleMeta:
    name, classes = {
        "xgboost": ("regime", REGIMES),
        "lstm": ("direction", ("down", "flat", "up")),
        "iforest": ("anomaly", ()),
    }[kind]
    return BundleMeta.for_model(
        name=name, kind=kind, feature_set_version=1, scaler=scaler, classes=classes,
        psi_reference={"names": []}, training={"seed": 0}, sequence_length=length, format=fmt,
    )  # fmt: skip


def xgb_model(x: Any, y: Any, trees: int = 30) -> xgb.XGBClassifier:
    """As training fits it: multi:softprob, class-balanced weights (so XGBoost 3's intercept
    differs per class, which the ONNX graph must carry)."""
    counts = np.bincount(y, minlength=3)
    w = len(y) / (3 * counts[y])
    model = xgb.XGBClassifier(
        n_estimators=trees, max_depth=4, objective="multi:softprob", num_class=3,
        tree_method="hist", n_jobs=1, random_state=0,
    )  # fmt: skip
    return model.fit(x, y, sample_weight=w)


# --- XGBoost -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["onnx", "xgboost-json"])
def test_xgboost_bundle_matches_predict_proba(tmp_path: Path, fmt: str) -> None:
    scaler, x, y = scaled()
    model = xgb_model(x, y)
    bundle = export_xgboost(model, tmp_path, meta("xgboost", scaler), x, format=fmt)
    assert bundle.meta.format == fmt
    assert (tmp_path / bundle.meta.model_file).is_file()
    _, fresh, _ = scaled(seed=9)  # rows the check did not see
    got = load_bundle(tmp_path).predict_prepared(fresh)
    np.testing.assert_allclose(got, model.predict_proba(fresh), atol=TOLERANCES[("xgboost", fmt)])
    assert got.shape == (len(fresh), 3)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-12)


class _Perturbed(xgb.XGBClassifier):
    """A training-side model whose probabilities are not what its booster computes."""

    def predict_proba(self, x: Any, *args: Any, **kw: Any) -> Any:
        p = super().predict_proba(x, *args, **kw)
        return p + np.where(np.arange(p.shape[1]) == 0, 2e-3, -1e-3)


@pytest.mark.parametrize("fmt", ["onnx", "xgboost-json"])
def test_xgboost_mismatch_raises_and_keeps_the_previous_bundle(tmp_path: Path, fmt: str) -> None:
    scaler, x, y = scaled()
    good = export_xgboost(xgb_model(x, y), tmp_path, meta("xgboost", scaler), x, format=fmt)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    bad = _Perturbed(n_estimators=5, max_depth=2, n_jobs=1, random_state=1).fit(x, y)
    with pytest.raises(ExportMismatch) as err:
        export_xgboost(bad, tmp_path, meta("xgboost", scaler), x, format=fmt)
    assert err.value.max_diff == pytest.approx(2e-3, rel=1e-2)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert load_bundle(tmp_path).meta == good.meta


# --- Isolation Forest -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [{}, {"max_features": 0.5}, {"bootstrap": True, "max_samples": 100}],
    ids=["default", "feature-subsets", "bootstrap"],
)
def test_iforest_bundle_matches_minus_score_samples(tmp_path: Path, params: dict[str, Any]) -> None:
    scaler, x, _ = scaled(indicators=False)
    model = IsolationForest(n_estimators=40, random_state=0, **params).fit(x)
    bundle = export_iforest(model, tmp_path, meta("iforest", scaler), x)
    _, fresh, _ = scaled(seed=4, indicators=False)
    outliers = (fresh * 6.0).astype(np.float32)
    for rows in (fresh, outliers):
        got = bundle.predict_prepared(rows)
        assert got.shape == (len(rows),)
        np.testing.assert_allclose(
            got, -model.score_samples(rows), atol=TOLERANCES[("iforest", "onnx")]
        )
    # higher = more anomalous
    assert bundle.predict_prepared(outliers).mean() > bundle.predict_prepared(fresh).mean()


def test_iforest_splits_exactly_at_float32_thresholds() -> None:
    """Inputs equal to a float64 threshold rounded to float32 (either way) go where
    scikit-learn sends them: the ONNX thresholds are the float32 at or below each one."""
    import onnxruntime as ort

    _, x, _ = scaled(n=300, indicators=False)
    model = IsolationForest(n_estimators=10, random_state=0).fit(x)
    rows = []
    for est, feats in zip(model.estimators_, model.estimators_features_, strict=True):
        t = est.tree_
        for node in np.flatnonzero(t.children_left != -1)[:20]:
            thr = float(t.threshold[node])
            for v in (np.float32(thr), np.nextafter(np.float32(thr), np.float32(np.inf))):
                row = x[node % len(x)].copy()
                row[feats[t.feature[node]]] = v
                rows.append(row)
    check = np.asarray(rows, dtype=np.float32)
    sess = ort.InferenceSession(
        iforest_to_onnx(model, x.shape[1]), providers=["CPUExecutionProvider"]
    )
    got = sess.run(["score"], {"input": check})[0]
    np.testing.assert_allclose(got, -model.score_samples(check), atol=1e-5)


class _PerturbedForest(IsolationForest):
    def score_samples(self, x: Any) -> Any:
        return super().score_samples(x) + 1e-4


def test_iforest_mismatch_raises(tmp_path: Path) -> None:
    scaler, x, _ = scaled(indicators=False)
    model = _PerturbedForest(n_estimators=20, random_state=0).fit(x)
    with pytest.raises(ExportMismatch) as err:
        export_iforest(model, tmp_path, meta("iforest", scaler), x)
    assert err.value.max_diff == pytest.approx(1e-4, rel=0.05)
    assert not (tmp_path / "bundle.json").exists()


# --- LSTM -------------------------------------------------------------------------------------


def lstm_data(length: int = 8) -> tuple[Scaler, Any, Any]:
    scaler, x, y = scaled(n=240)
    groups = np.repeat(np.arange(8), 30)  # 8 sessions of 30 rows: the first rows are padded
    return scaler, sequences(x, groups, length), y


def test_onnx_lstm_matches_torch_including_padded_sequences(tmp_path: Path) -> None:
    scaler, seq, y = lstm_data()
    model = fit_lstm(seq, y, LstmConfig(sequence_length=8, hidden_size=12, epochs=2, seed=1))
    bundle = export_lstm(model, tmp_path, meta("lstm", scaler, length=8), seq)
    rng = np.random.default_rng(3)
    noise = rng.normal(size=seq.shape).astype(np.float32)
    padded = seq[:5]  # session starts: steps before the first row are padding
    assert (padded[0, :-1, N_INPUTS:] == 1).all()
    for rows in (seq, noise, padded, seq[:1]):
        with torch.no_grad():
            ref = torch.softmax(model(torch.from_numpy(rows)), dim=-1).double().numpy()
        got = bundle.predict_prepared(rows)
        assert np.max(np.abs(got - ref)) <= 1e-5


@pytest.mark.parametrize("layers", [1, 2])
def test_lstm_onnx_has_dynamic_batch_and_steps_and_is_reproducible(layers: int) -> None:
    import onnxruntime as ort

    torch.manual_seed(0)
    model = DirectionLstm(width=2 * N_INPUTS, hidden_size=6, num_layers=layers, dropout=0.2).eval()
    data = lstm_to_onnx(model, 8)
    assert lstm_to_onnx(model, 8) == data  # the same bytes run to run
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for batch, steps in ((1, 8), (5, 8), (3, 20)):
        x = (
            np.random.default_rng(batch)
            .normal(size=(batch, steps, 2 * N_INPUTS))
            .astype(np.float32)
        )
        with torch.no_grad():
            ref = torch.softmax(model(torch.from_numpy(x)), dim=-1).numpy()
        np.testing.assert_allclose(sess.run(["probabilities"], {"input": x})[0], ref, atol=1e-5)


class _TracedDiffers(DirectionLstm):
    """Eager forward differs from the graph the exporter traces (a bias added only eagerly)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if torch.onnx.is_in_onnx_export():
            return out
        return out + torch.tensor([1e-3, 0.0, 0.0])


def test_lstm_mismatch_raises(tmp_path: Path) -> None:
    scaler, seq, _ = lstm_data()
    torch.manual_seed(0)
    model = _TracedDiffers(width=seq.shape[2], hidden_size=6).eval()
    with pytest.raises(ExportMismatch) as err:
        export_lstm(model, tmp_path, meta("lstm", scaler, length=8), seq)
    assert 1e-5 < err.value.max_diff < 1e-3
    assert not any(tmp_path.iterdir())


def test_export_refuses_a_meta_of_another_kind(tmp_path: Path) -> None:
    scaler, x, y = scaled()
    with pytest.raises(ValueError, match="lstm"):
        export_xgboost(xgb_model(x, y, trees=2), tmp_path, meta("lstm", scaler, length=8), x)
    with pytest.raises(ValueError, match="xgboost-json"):
        export_xgboost(xgb_model(x, y, trees=2), tmp_path, meta("xgboost", scaler), x, format="pkl")
