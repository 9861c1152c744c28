"""drift.job, drift.metrics, drift.references and DriftSettings without servers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signalstack.config import DriftSettings
from signalstack.drift.job import DriftReport, ModelDrift, drift_frame, level, window
from signalstack.drift.metrics import DriftMetrics
from signalstack.drift.psi import reference_distribution
from signalstack.drift.references import DriftError, from_directory
from signalstack.drift.retrain import RetrainOutcome
from signalstack.inference.bundle import BundleMeta
from signalstack.inference.inputs import Scaler, input_spec

T = pd.Timestamp("2026-03-02 20:00", tz="UTC")


def md(model: str, status: str, psi: dict[str, float]) -> ModelDrift:
    return ModelDrift(model, "3", f"{model} v3", 1, 500, psi, status,  # type: ignore[arg-type]
                      tuple(k for k, v in psi.items() if v >= 0.25))  # fmt: skip


def test_levels_and_the_window() -> None:
    assert [level(v, 0.1, 0.25) for v in (0.0, 0.0999, 0.1, 0.2499, 0.25, 3.0)] == [
        "stable", "stable", "warn", "warn", "alert", "alert",
    ]  # fmt: skip
    assert window("2026-03-02T20:00:59.9Z", 60) == (T - pd.Timedelta(hours=1), T)


def test_the_report_outcome_and_exit_status() -> None:
    stable = md("regime", "stable", {"a": 0.01})
    warn = md("anomaly", "warn", {"a": 0.2})
    alert = md("direction", "alert", {"a": 0.3, "b": 0.01})
    no_data = ModelDrift("regime", "3", "r", 1, 5, {}, "no_data")

    def report(*m: ModelDrift) -> DriftReport:
        return DriftReport(T, T, 0.1, 0.25, m)

    assert (report().outcome, report().exit_code) == ("no_models", 0)
    assert (report(no_data).outcome, report(no_data).exit_code) == ("no_data", 0)
    assert (report(stable, warn).outcome, report(stable, warn).exit_code) == ("warn", 0)
    r = report(stable, warn, alert)
    assert (r.outcome, r.exit_code, r.drifted) == ("alert", 7, ["direction"])
    assert alert.max_psi == 0.3 and no_data.max_psi == 0.0
    frame = drift_frame(r)
    assert frame["feature"].tolist() == ["regime/a", "anomaly/a", "direction/a", "direction/b"]
    assert set(frame["reference"]) == {"regime v3", "anomaly v3", "direction v3"}
    assert drift_frame(report(no_data)).empty


def test_metrics_of_a_pass() -> None:
    m = DriftMetrics()
    created = RetrainOutcome("kubernetes", "created", "created job x", "x")
    r = DriftReport(
        T, T, 0.1, 0.25, (md("regime", "alert", {"a": 0.3, "b": 0.05}),), retrain=created
    )
    m.observe(r, now=1_700_000_000.0)
    get = m.registry.get_sample_value
    assert get("signalstack_drift_psi", {"model": "regime", "input": "a"}) == 0.3
    assert get("signalstack_drift_psi_max", {"model": "regime"}) == 0.3
    assert get("signalstack_drift_window_rows", {"model": "regime"}) == 500
    assert get("signalstack_drift_alert_threshold", {}) == 0.25
    assert get("signalstack_drift_last_run_timestamp_seconds", {}) == 1_700_000_000.0
    assert get("signalstack_drift_runs_total", {"outcome": "alert"}) == 1
    labels = {"mode": "kubernetes", "action": "created"}
    assert get("signalstack_drift_retrain_requests_total", labels) == 1
    m.failed()  # the same pass failing afterwards is not counted twice
    assert get("signalstack_drift_runs_total", {"outcome": "error"}) is None
    fresh = DriftMetrics()
    fresh.failed(now=5.0)
    errors = fresh.registry.get_sample_value("signalstack_drift_runs_total", {"outcome": "error"})
    assert errors == 1
    assert 'signalstack_drift_psi{input="a",model="regime"} 0.3' in m.exposition()


def test_a_dead_pushgateway_is_logged_not_raised() -> None:
    assert DriftMetrics().push("http://127.0.0.1:9") is False
    assert DriftMetrics().push("") is False


def _bundle_dir(root: Path, model: str, **change: object) -> Path:
    spec = input_spec(1)
    x = np.random.default_rng(0).normal(size=(300, len(spec.input_names)))
    meta = BundleMeta.for_model(
        name=model, kind="xgboost", feature_set_version=1, scaler=Scaler.fit(x),
        classes=("calm", "trending", "volatile"),
        psi_reference=reference_distribution(x, list(spec.input_names)).to_dict(),
        training={"run_id": "r1"},
    )  # fmt: skip
    d = root / model
    d.mkdir(parents=True)
    doc = {**meta.to_dict(), **change}
    (d / "bundle.json").write_text(json.dumps(doc))
    return d


def test_references_from_a_directory(tmp_path: Path) -> None:
    _bundle_dir(tmp_path, "regime")
    models, skipped = from_directory(tmp_path, ("regime", "anomaly"))
    assert [(m.name, m.version, m.run_id, m.label) for m in models] == [
        ("regime", "local", "r1", "regime local run r1")
    ]
    assert models[0].reference.names == input_spec(1).input_names
    assert skipped == {"anomaly": f"no bundle in {tmp_path / 'anomaly'}"}
    with pytest.raises(DriftError, match="not a directory"):
        from_directory(tmp_path / "nope", ("regime",))


def test_a_bundle_without_a_usable_reference_is_named(tmp_path: Path) -> None:
    _bundle_dir(tmp_path, "regime", psi_reference={"names": ["x"]})
    with pytest.raises(DriftError, match="psi_reference") as bad:  # exit 2: bad input
        from_directory(tmp_path, ("regime",))
    assert bad.value.exit_code == 2
    _bundle_dir(tmp_path / "b", "anomaly", name="regime")
    with pytest.raises(DriftError, match="holds the 'regime' model"):
        from_directory(tmp_path / "b", ("anomaly",))


def test_drift_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFT_MODELS", "Regime, anomaly")
    monkeypatch.setenv("DRIFT_RETRAIN_TIMEOUT_S", "")
    s = DriftSettings()
    assert s.models == ("regime", "anomaly") and s.retrain_timeout_s is None
    assert (s.warn_psi, s.alert_psi, s.retrain) == (0.1, 0.25, "auto")
    with pytest.raises(ValueError, match="DRIFT_WARN_PSI"):
        DriftSettings(warn_psi=0.3, alert_psi=0.25)
    with pytest.raises(ValueError, match="regime, direction, anomaly"):
        DriftSettings(models=("lstm",))


def test_an_unreachable_registry_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from signalstack.drift.references import from_registry

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with pytest.raises(DriftError, match=r"MLflow registry http://127\.0\.0\.1:9 \(regime\)"):
        from_registry("http://127.0.0.1:9", "champion", "", ("regime",), tmp_path)
