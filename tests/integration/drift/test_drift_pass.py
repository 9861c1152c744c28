"""`signalstack drift` end to end: real bundles of the three models (signalstack.training),
feature rows in a real store (DuckDB, TimescaleDB), the Kubernetes client against a recorder of
the API server's Job endpoints (the live API server comes with a later issue).

- a window drawn from the training distribution stays under the warn level, and neither rows
  stamped after the pass's time nor rows of another feature set version count;
- a shifted window (momentum × 4, volumes × 20) raises the gauges over the alert level and
  creates exactly one Job, whose body validates against the batch/v1 Job schema; a second pass
  finds it unfinished and creates none; once it has finished, a later drift creates another;
- DRIFT_RETRAIN=local runs the configured command once, with the drifted models and a window;
- drift rows are upserted on their key: the same pass twice leaves one row per model input;
- the command's exit status says whether a model drifted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry
from tests.integration.drift.support import (
    FSV,
    SCHEMA,
    SYMBOLS,
    export_bundles,
    fake_jobs_api,
    features,
    register_champion,
)

from signalstack.config import DriftSettings, MarketSettings, Settings, StoreSettings
from signalstack.drift import job, references
from signalstack.drift.job import EXIT_DRIFT
from signalstack.drift.metrics import DriftMetrics
from signalstack.drift.retrain import LABEL_SELECTOR
from signalstack.store.base import Store
from signalstack.store.duckdb import DuckDBStore

pytestmark = [pytest.mark.integration]

NOW = pd.Timestamp("2026-03-02 20:00:30", tz="UTC")
WINDOW = 600  # minutes; the window holds 600 rows per symbol
TRAIN_END = NOW - pd.Timedelta(days=2)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bundles")
    return export_bundles(root, features(1500, TRAIN_END, seed=1))


def fill(store: Store, *, shift: bool) -> None:
    """Training-time rows, the window's rows (shifted or not), and rows a pass must not read:
    shifted rows stamped after NOW and shifted rows of feature set 2 inside the window."""
    store.write_features(features(1500, TRAIN_END, seed=1))
    store.write_features(features(WINDOW, NOW.floor("min"), seed=3 if shift else 2, shift=shift))
    store.write_features(features(60, NOW.floor("min") + pd.Timedelta(minutes=60), seed=4,
                                  shift=True))  # fmt: skip
    store.write_features(features(WINDOW, NOW.floor("min"), seed=5, shift=True, fsv=2))


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[DuckDBStore]:
    s = DuckDBStore(str(tmp_path / "store.duckdb"))
    s.migrate()
    try:
        yield s
    finally:
        s.close()


def settings(tmp_path: Path, bundles: Path, **drift: Any) -> Settings:
    return Settings(
        store=StoreSettings(type="duckdb", duckdb_path=str(tmp_path / "store.duckdb")),
        market=MarketSettings(symbols=SYMBOLS),
        drift=DriftSettings(
            **{
                "model_dir": bundles,
                "window_minutes": WINDOW,
                "api_attempts": 2,
                "backoff_base_s": 0.05,
                **drift,
            }
        ),
    )


def gauge(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_a_window_like_training_stays_under_the_warn_level(
    tmp_path: Path, bundles: Path, duck: DuckDBStore
) -> None:
    fill(duck, shift=False)
    duck.close()
    with fake_jobs_api() as k8s:
        s = settings(tmp_path, bundles, retrain="kubernetes",
                     kubeconfig=k8s.kubeconfig(tmp_path / "kubeconfig"))  # fmt: skip
        metrics = DriftMetrics()
        report = job.run(s, now=NOW, metrics=metrics)
    assert [m.model for m in report.models] == ["regime", "direction", "anomaly"]
    assert report.skipped == {}
    for m in report.models:
        assert m.rows == WINDOW * len(SYMBOLS)  # no future rows, no feature set 2 rows
        assert m.status == "stable", m.psi
        assert 0 < m.max_psi < 0.1
        assert gauge(metrics.registry, "signalstack_drift_psi_max", model=m.model) == m.max_psi
    assert report.exit_code == 0 and report.retrain is None
    assert k8s.requests == []  # no drift: the API is not even asked
    assert gauge(metrics.registry, "signalstack_drift_runs_total", outcome="stable") == 1


def test_a_shift_raises_the_gauge_and_creates_exactly_one_valid_job(
    tmp_path: Path, bundles: Path, duck: DuckDBStore
) -> None:
    fill(duck, shift=True)
    duck.close()
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    with fake_jobs_api() as k8s:
        s = settings(tmp_path, bundles, retrain="kubernetes", namespace="ml",
                     kubeconfig=k8s.kubeconfig(tmp_path / "kubeconfig"),
                     job_image="registry.local/signalstack:1.2.3")  # fmt: skip
        metrics = DriftMetrics()
        first = job.run(s, now=NOW, metrics=metrics)
        assert first.drifted == ["regime", "direction", "anomaly"]
        assert first.exit_code == EXIT_DRIFT
        for name in ("regime", "direction", "anomaly"):
            top = gauge(metrics.registry, "signalstack_drift_psi_max", model=name)
            assert top is not None and top >= 0.25
        assert gauge(metrics.registry, "signalstack_drift_psi", model="regime",
                     input="price_momentum_1m") >= 0.25  # type: ignore[operator]  # fmt: skip
        assert first.retrain is not None and first.retrain.action == "created"
        assert len(k8s.created) == 1

        second = job.run(s, now=NOW + pd.Timedelta(minutes=5), metrics=DriftMetrics())
        assert second.drifted == ["regime", "direction", "anomaly"]
        assert second.retrain is not None and second.retrain.action == "already_running"
        assert len(k8s.created) == 1  # exactly one Job while it runs

        body = k8s.created[0]
        errors = [e.message for e in validator.iter_errors(body)]
        assert errors == []
        posts = [(m, p) for m, p, _ in k8s.requests if m == "POST"]
        assert posts == [("POST", "/apis/batch/v1/namespaces/ml/jobs")]
        lists = [p for m, p, _ in k8s.requests if m == "GET"]
        assert len(lists) == 2 and all("labelSelector=" in p for p in lists)
        for term in LABEL_SELECTOR.split(","):
            key, value = term.split("=")
            assert body["metadata"]["labels"][key] == value
            assert body["spec"]["template"]["metadata"]["labels"][key] == value
        assert body["metadata"]["name"] == "signalstack-retrain-20260302-200030"
        assert (
            body["metadata"]["annotations"]["signalstack.io/drifted-models"]
            == "regime,direction,anomaly"
        )
        container = body["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "registry.local/signalstack:1.2.3"
        assert container["args"] == [
            "train", "--data-source", "store", "--model", "regime,direction,anomaly",
            "--start", "2026-02-10T20:00:30+00:00", "--end", "2026-03-02T20:00:30+00:00",
        ]  # fmt: skip

        # once the Job has finished, a drift still there gets a new one
        k8s.finish(body["metadata"]["name"])
        third = job.run(s, now=NOW + pd.Timedelta(minutes=10), metrics=DriftMetrics())
        assert third.retrain is not None and third.retrain.action == "created"
        assert len(k8s.created) == 2
        assert validator.is_valid(k8s.created[1])


def test_local_mode_runs_the_training_command_once(
    tmp_path: Path, bundles: Path, duck: DuckDBStore
) -> None:
    fill(duck, shift=True)
    duck.close()
    calls = tmp_path / "calls.jsonl"
    record = f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')"
    script = f"import json, sys; {record}"
    command = f"{sys.executable} -c {json.dumps(script)} train --data-source store"
    s = settings(tmp_path, bundles, retrain="local", retrain_command=command,
                 retrain_lookback_days=5)  # fmt: skip
    report = job.run(s, now=NOW)
    assert report.retrain is not None and report.retrain.action == "ran"
    assert report.retrain.returncode == 0
    lines = calls.read_text().splitlines()
    assert [json.loads(x) for x in lines] == [[
        "train", "--data-source", "store", "--model", "regime,direction,anomaly",
        "--start", "2026-02-25T20:00:30+00:00", "--end", "2026-03-02T20:00:30+00:00",
    ]]  # fmt: skip


def _rows_written_twice(store: Store, bundles: Path) -> None:
    fill(store, shift=True)
    models, _ = references.from_directory(bundles, ("regime", "anomaly"))
    kw: dict[str, Any] = {"symbols": SYMBOLS, "window_minutes": WINDOW, "warn_psi": 0.1,
                          "alert_psi": 0.25, "min_rows": 100}  # fmt: skip
    report = job.run_pass(store, models, now=NOW, **kw)
    n_inputs = len(models[0].input_names) + len(models[1].input_names)
    assert store.count("drift") == n_inputs
    job.run_pass(store, models, now=NOW + pd.Timedelta(seconds=20), **kw)  # same minute
    assert store.count("drift") == n_inputs  # upserted on the key, not appended
    got = store.drift_results(NOW - pd.Timedelta(hours=1), NOW + pd.Timedelta(hours=1))
    assert len(got) == n_inputs
    assert set(got["window_end"]) == {NOW.floor("min")}
    assert set(got["window_start"]) == {NOW.floor("min") - pd.Timedelta(minutes=WINDOW)}
    assert set(got["feature_set_version"]) == {FSV}
    assert "regime/price_momentum_1m" in set(got["feature"])
    assert set(got["reference"]) == {"regime local run test-run", "anomaly local run test-run"}
    want = {f"{m.model}/{k}": v for m in report.models for k, v in m.psi.items()}
    assert dict(zip(got["feature"], got["psi"], strict=True)) == pytest.approx(want)
    # a later window is a row of its own
    job.run_pass(store, models, now=NOW + pd.Timedelta(minutes=1), **kw)
    assert store.count("drift") == 2 * n_inputs


def test_drift_rows_are_idempotent_on_duckdb(bundles: Path, duck: DuckDBStore) -> None:
    _rows_written_twice(duck, bundles)


def test_drift_rows_are_idempotent_on_timescale(bundles: Path, timescale_db: Any) -> None:
    from signalstack.store.timescale import TimescaleStore

    store = TimescaleStore(timescale_db.dsn)
    store.migrate()
    try:
        _rows_written_twice(store, bundles)
    finally:
        store.close()


def test_the_command_exit_status_says_whether_a_model_drifted(
    tmp_path: Path, bundles: Path, duck: DuckDBStore
) -> None:
    fill(duck, shift=True)
    duck.close()
    env = {
        **os.environ,
        "STORE_TYPE": "duckdb",
        "STORE_DUCKDB_PATH": str(tmp_path / "store.duckdb"),
        "MARKET_SYMBOLS": ",".join(SYMBOLS),
        "DRIFT_MODEL_DIR": str(bundles),
        "DRIFT_WINDOW_MINUTES": str(WINDOW),
        "DRIFT_RETRAIN": "kubernetes",  # overridden by --retrain off
        "LOG_FORMAT": "console",
    }
    res = subprocess.run(
        [sys.executable, "-m", "signalstack", "drift", "--as-of", NOW.isoformat(),
         "--retrain", "off", "--metrics"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert res.returncode == EXIT_DRIFT, res.stdout + res.stderr
    assert "regime local: alert" in res.stdout
    assert "retrain (off): reported" in res.stdout
    assert 'signalstack_drift_psi_max{model="anomaly"}' in res.stdout
    assert "Traceback" not in res.stderr
    res = subprocess.run(
        [sys.executable, "-m", "signalstack", "drift", "--as-of", "not a time"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert res.returncode == 2 and "--as-of" in res.stderr, res.stderr


@pytest.mark.slow
def test_references_come_from_the_mlflow_alias(
    tmp_path: Path, bundles: Path, duck: DuckDBStore, mlflow: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uuid

    from signalstack.config import MlflowSettings

    fill(duck, shift=True)
    duck.close()
    prefix = f"d{uuid.uuid4().hex[:8]}-"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow.tracking_uri)
    rows = features(5, TRAIN_END, seed=9)
    version = register_champion(mlflow.tracking_uri, bundles, prefix + "regime", rows)
    s = settings(tmp_path, bundles, model_dir=None, retrain="off").model_copy(
        update={"mlflow": MlflowSettings(tracking_uri=mlflow.tracking_uri, model_prefix=prefix)}
    )
    monkeypatch.chdir(tmp_path)
    report = job.run(s, now=NOW)
    # the bundle came from the server: MLflow's default local store was never touched
    assert not (tmp_path / "mlflow.db").exists()
    assert [(m.model, m.version, m.status) for m in report.models] == [("regime", version, "alert")]
    assert set(report.skipped) == {"direction", "anomaly"}
    assert "no 'champion' alias" in report.skipped["anomaly"]
    assert report.retrain is not None and report.retrain.action == "reported"


def test_the_api_is_retried_on_503_and_a_403_is_a_clear_error(
    tmp_path: Path, bundles: Path, duck: DuckDBStore
) -> None:
    from signalstack.drift.retrain import RetrainError

    fill(duck, shift=True)
    duck.close()
    with fake_jobs_api() as k8s:
        s = settings(tmp_path, bundles, retrain="kubernetes", api_attempts=3,
                     kubeconfig=k8s.kubeconfig(tmp_path / "kubeconfig"))  # fmt: skip
        k8s.fail = [503, 503]  # the list twice, then it answers
        report = job.run(s, now=NOW)
        assert report.retrain is not None and report.retrain.action == "created"
        assert [m for m, _, _ in k8s.requests] == ["GET", "GET", "GET", "POST"]
        assert len(k8s.created) == 1

        k8s.finish(k8s.created[0]["metadata"]["name"])
        k8s.requests.clear()
        k8s.fail = [403]  # RBAC: not retried
        metrics = DriftMetrics()
        with pytest.raises(
            RetrainError,
            match=r"list jobs in namespace 'default' answered 403 Forbidden: jobs.batch is "
            r"forbidden \(test\)",
        ):
            job.run(s, now=NOW, metrics=metrics)
        assert [m for m, _, _ in k8s.requests] == ["GET"]
    # the pass's PSI was recorded before the request failed
    assert gauge(metrics.registry, "signalstack_drift_runs_total", outcome="alert") == 1
    labels = {"mode": "kubernetes", "action": "error"}
    assert gauge(metrics.registry, "signalstack_drift_retrain_requests_total", **labels) == 1
    with DuckDBStore(str(tmp_path / "store.duckdb")) as store:
        assert store.count("drift") > 0
