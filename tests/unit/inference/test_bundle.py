"""The serving bundle: round trip, the input path, refusals, no training stack at import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import xgboost as xgb
from sklearn.ensemble import IsolationForest

from signalstack.inference.bundle import (
    META_FILE,
    Bundle,
    BundleError,
    BundleMeta,
    load_bundle,
    save_bundle,
)
from signalstack.inference.inputs import Scaler, input_spec, sequences
from signalstack.training.export import export_iforest, export_lstm, export_xgboost
from signalstack.training.lstm import DirectionLstm

SPEC = input_spec(1)
PSI = {"names": ["vwap_gap"], "edges": [[0.0, 1.0]], "expected": [[0.5, 0.5]]}


def stored_features(n: int, seed: int = 0) -> pd.DataFrame:
    """Feature rows of feature set 1 at plausible scales, some missing (early-session NaN)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 10))
    f = pd.DataFrame(
        {
            "vwap_5m": 100 * np.exp(0.002 * z[:, 0]),
            "vwap_15m": 100 * np.exp(0.002 * z[:, 1]),
            "realized_vol_5m": 1e-3 * np.abs(1 + 0.3 * z[:, 2]),
            "realized_vol_15m": 1e-3 * np.abs(1 + 0.2 * z[:, 3]),
            "price_momentum_1m": 1e-3 * z[:, 4],
            "price_momentum_5m": 2e-3 * z[:, 5],
            "volume_5m": np.exp(8 + z[:, 6]),
            "volume_ratio": np.exp(0.5 * z[:, 7]),
            "trade_count_1m": rng.poisson(20, n).astype(float),
            "avg_trade_size_1m": np.exp(4 + 0.5 * z[:, 9]),
        }
    )
    f.iloc[:3, [2, 3, 5, 7]] = np.nan
    return f


def make_meta(kind: str, scaler: Scaler, **kw: Any) -> BundleMeta:
    name, classes = {
        "xgboost": ("regime", ("calm", "trending", "volatile")),
        "lstm": ("direction", ("down", "flat", "up")),
        "iforest": ("anomaly", ()),
    }[kind]
    return BundleMeta.for_model(
        name=name, kind=kind, feature_set_version=1, scaler=scaler, classes=classes,
        psi_reference=PSI, training={"run_id": "abc", "seed": 0}, **kw,
    )  # fmt: skip


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return stored_features(300)


@pytest.fixture(scope="module")
def regime_dir(tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame) -> Path:
    scaler = Scaler.fit(SPEC.transform(frame))
    x = scaler.transform(SPEC.transform(frame))
    y = np.arange(len(x)) % 3
    model = xgb.XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1, random_state=0).fit(x, y)
    d = tmp_path_factory.mktemp("regime")
    export_xgboost(model, d, make_meta("xgboost", scaler), x)
    return d


@pytest.fixture(scope="module")
def anomaly_dir(tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame) -> Path:
    scaler = Scaler.fit(SPEC.transform(frame), indicators=False)
    x = scaler.transform(SPEC.transform(frame))
    model = IsolationForest(n_estimators=20, random_state=0).fit(x)
    d = tmp_path_factory.mktemp("anomaly")
    export_iforest(model, d, make_meta("iforest", scaler), x)
    return d


@pytest.fixture(scope="module")
def direction_dir(tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame) -> Path:
    torch.set_num_threads(1)
    scaler = Scaler.fit(SPEC.transform(frame))
    x = scaler.transform(SPEC.transform(frame))
    torch.manual_seed(0)
    model = DirectionLstm(scaler.width, hidden_size=6).eval()
    d = tmp_path_factory.mktemp("direction")
    seq = sequences(x, np.repeat(np.arange(10), 30), 5)
    export_lstm(model, d, make_meta("lstm", scaler, sequence_length=5), seq)
    return d


def test_meta_json_round_trip(regime_dir: Path) -> None:
    meta = load_bundle(regime_dir).meta
    again = BundleMeta.from_json(meta.to_json())
    assert again == meta
    d = json.loads((regime_dir / META_FILE).read_text())
    assert d["schema_version"] == 1
    assert d["feature_columns"] == list(SPEC.feature_columns)
    assert d["input_names"] == list(SPEC.input_names)
    assert d["psi_reference"] == PSI
    assert d["training"]["run_id"] == "abc"
    assert d["created_at"].endswith("+00:00")


def test_meta_json_carries_numpy_values_and_undefined_metrics_as_null() -> None:
    scaler = Scaler.fit(np.random.default_rng(0).normal(size=(20, len(SPEC.input_names))))
    training = {
        "rows": np.int64(7),
        "holdout": {"roc_auc": float("nan"), "log_loss": np.float32(0.5)},
        "range": ("2024-03-05", "2024-03-06"),
        "edges": np.array([0.0, 1.0]),
    }
    meta = BundleMeta.for_model(
        name="regime", kind="xgboost", feature_set_version=1, scaler=scaler,
        classes=("calm", "trending", "volatile"), psi_reference=PSI, training=training,
    )  # fmt: skip
    d = json.loads(meta.to_json())
    assert d["training"] == {
        "rows": 7,
        "holdout": {"roc_auc": None, "log_loss": 0.5},
        "range": ["2024-03-05", "2024-03-06"],
        "edges": [0.0, 1.0],
    }
    assert BundleMeta.from_json(meta.to_json()).training == d["training"]


def test_classifier_predict_frame_array_and_prepared_agree(
    regime_dir: Path, frame: pd.DataFrame
) -> None:
    b = load_bundle(regime_dir)
    p = b.predict(frame)
    assert p.shape == (len(frame), 3)
    assert p.dtype == np.float64
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(b.predict(frame[list(SPEC.feature_columns)].to_numpy()), p)
    scaler = Scaler.from_dict(b.meta.scaler)
    np.testing.assert_array_equal(b.predict_prepared(scaler.transform(SPEC.transform(frame))), p)
    # one row, as the API predicts it; the frame may carry more columns, in any order
    extra = frame.iloc[[7]].assign(symbol="AAA", feature_set_version=1)[::-1]
    np.testing.assert_array_equal(b.predict(extra[extra.columns[::-1]]), p[[7]])


def test_anomaly_score_is_one_number_per_row(anomaly_dir: Path, frame: pd.DataFrame) -> None:
    b = load_bundle(anomaly_dir)
    s = b.predict(frame)
    assert s.shape == (len(frame),)
    assert s.dtype == np.float64
    assert ((s > 0) & (s < 1)).all()
    wild = frame.copy()
    wild["price_momentum_1m"] *= 50  # a 50-sigma minute
    assert b.predict(wild).mean() > s.mean()


def test_lstm_predict_builds_sequences_within_groups(
    direction_dir: Path, frame: pd.DataFrame
) -> None:
    b = load_bundle(direction_dir)
    rows = frame.iloc[:40]
    groups = np.repeat([0, 1], 20)
    p = b.predict(rows, groups)
    scaler = Scaler.from_dict(b.meta.scaler)
    seq = sequences(scaler.transform(SPEC.transform(rows)), groups, 5)
    np.testing.assert_array_equal(p, b.predict_prepared(seq))
    assert p.shape == (40, 3)
    # the second group's first row sees only itself: the same as predicting that row alone
    np.testing.assert_allclose(p[20], b.predict(rows.iloc[[20]])[0], atol=1e-7)
    # without groups all rows are one session: row 20 then sees rows 16..19 too
    assert not np.allclose(b.predict(rows)[20], p[20], atol=1e-7)


@pytest.mark.parametrize("which", ["regime_dir", "anomaly_dir", "direction_dir"])
def test_predict_last_is_the_last_row_of_predict(
    which: str, frame: pd.DataFrame, request: pytest.FixtureRequest
) -> None:
    b = load_bundle(request.getfixturevalue(which))
    for rows in (frame.iloc[:3], frame.iloc[:40]):  # fewer rows than the LSTM's length, more
        np.testing.assert_array_equal(b.predict_last(rows), b.predict(rows)[-1:])
    with pytest.raises(ValueError, match="feature_set_version 2"):
        b.predict_last(frame.assign(feature_set_version=2))
    with pytest.raises(ValueError, match="no feature rows"):
        b.predict_last(frame.iloc[:0])


def test_refuses_features_of_another_feature_set_version(
    regime_dir: Path, frame: pd.DataFrame
) -> None:
    b = load_bundle(regime_dir)
    with pytest.raises(ValueError, match=r"feature_set_version 2.*feature_set_version 1"):
        b.predict(frame.assign(feature_set_version=2))
    mixed = frame.assign(feature_set_version=[1] * (len(frame) - 1) + [2])
    with pytest.raises(ValueError, match="feature_set_version 2"):
        b.predict(mixed)
    b.predict(frame.assign(feature_set_version=np.int16(1)))  # the same version: accepted


def test_refuses_inputs_of_the_wrong_width(regime_dir: Path, frame: pd.DataFrame) -> None:
    b = load_bundle(regime_dir)
    with pytest.raises(ValueError, match=r"expected a \(n, 10\) array"):
        b.predict(frame.to_numpy()[:, :9])
    with pytest.raises(ValueError, match="feature columns missing: volume_ratio"):
        b.predict(frame.drop(columns="volume_ratio"))
    with pytest.raises(ValueError, match=r"expects input of shape \(n, 24\)"):
        b.predict_prepared(np.zeros((2, 23), np.float32))
    with pytest.raises(ValueError, match="finite"):
        b.predict_prepared(np.full((1, 24), np.nan, np.float32))
    assert b.predict_prepared(np.zeros((0, 24), np.float32)).shape == (0, 3)


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def _edit_meta(d: Path, **changes: Any) -> None:
    m = json.loads((d / META_FILE).read_text())
    m.update(changes)
    (d / META_FILE).write_text(json.dumps(m))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": "pickle"}, "unknown format 'pickle' for a xgboost model"),
        ({"kind": "svm"}, "unknown model kind 'svm'"),
        ({"schema_version": 2}, "schema_version 2 is not supported"),
        ({"model_file": "../model.onnx"}, "plain file name"),
        ({"feature_set_version": 2}, "differ from feature_set_version 2"),
        ({"feature_set_version": 7}, "unknown feature_set_version 7"),
        ({"classes": []}, "classes must be empty for an anomaly model and only for one"),
        ({"surprise": 1}, "unknown fields: surprise"),
    ],
)
def test_load_refuses_an_invalid_meta(
    regime_dir: Path, tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    d = _copy(regime_dir, tmp_path / "b")
    _edit_meta(d, **changes)
    with pytest.raises(BundleError, match=message):
        load_bundle(d)


def test_load_refuses_missing_files(regime_dir: Path, tmp_path: Path) -> None:
    d = _copy(regime_dir, tmp_path / "b")
    (d / "model.onnx").unlink()
    with pytest.raises(BundleError, match=r"model file model\.onnx is missing"):
        load_bundle(d)
    with pytest.raises(BundleError, match=r"bundle\.json is missing"):
        load_bundle(tmp_path / "nothing")
    m = json.loads((regime_dir / META_FILE).read_text())
    del m["scaler"]
    (d / META_FILE).write_text(json.dumps(m))
    with pytest.raises(BundleError, match="incomplete"):
        load_bundle(d)


def test_load_refuses_a_model_that_does_not_fit_its_meta(
    regime_dir: Path, direction_dir: Path, tmp_path: Path
) -> None:
    d = _copy(regime_dir, tmp_path / "b")
    # the LSTM's ONNX file in place of the regime model: another input rank and no such output
    (d / "model.onnx").write_bytes((direction_dir / "model.onnx").read_bytes())
    with pytest.raises(BundleError):
        load_bundle(d)
    (d / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(BundleError, match="ONNX Runtime can load"):
        load_bundle(d)


def test_save_bundle_writes_meta_and_model_and_validates(tmp_path: Path) -> None:
    scaler = Scaler.fit(np.random.default_rng(0).normal(size=(50, len(SPEC.input_names))))
    meta = make_meta("xgboost", scaler, format="xgboost-json")
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(60, scaler.width)).astype(np.float32), np.arange(60) % 3
    model = xgb.XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1).fit(x, y)
    raw = bytes(model.get_booster().save_raw(raw_format="json"))
    d = save_bundle(tmp_path / "new", meta, raw)
    assert sorted(p.name for p in d.iterdir()) == ["bundle.json", "model.json"]  # no temp files
    b = load_bundle(d)
    assert isinstance(b, Bundle)
    # a bundle of another format written over it leaves no stale model file behind
    onnx_meta = make_meta("xgboost", scaler, format="onnx")
    save_bundle(d, onnx_meta, b"onnx bytes")
    assert sorted(p.name for p in d.iterdir()) == ["bundle.json", "model.onnx"]
    d = save_bundle(tmp_path / "new", meta, raw)
    np.testing.assert_allclose(b.predict_prepared(x), model.predict_proba(x), atol=1e-6)
    bad = make_meta("lstm", Scaler.fit(np.zeros((3, 12))), sequence_length=None)
    with pytest.raises(BundleError, match="sequence_length"):
        save_bundle(tmp_path / "bad", bad, b"")
    no_ind = make_meta("lstm", Scaler.fit(np.zeros((3, 12)), indicators=False), sequence_length=3)
    with pytest.raises(BundleError, match="missing indicators"):
        save_bundle(tmp_path / "bad", no_ind, b"")


def test_import_pulls_in_no_training_stack(regime_dir: Path, anomaly_dir: Path) -> None:
    """The inference image has no torch or scikit-learn: importing the bundle module, loading
    ONNX bundles and predicting must not import them (nor mlflow or pandas)."""
    code = (
        "import sys, numpy as np\n"
        "import signalstack.inference.bundle as b\n"
        f"for d in ({str(regime_dir)!r}, {str(anomaly_dir)!r}):\n"
        "    bundle = b.load_bundle(d)\n"
        "    bundle.predict(np.ones((2, 10)))\n"
        "heavy = [m for m in ('torch', 'sklearn', 'mlflow', 'pandas', 'xgboost')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == ""
