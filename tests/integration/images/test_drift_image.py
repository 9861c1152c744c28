"""The drift image (Dockerfile target `drift`: serving's layers, no training stack) runs the drift
CronJob's `signalstack drift` for real: bundles fitted on the host (the drift tests' helpers),
feature rows in the session's TimescaleDB, and the references read from a mounted model
directory or from the MLflow server's `champion` alias (mlflow-skinny's client); the pass
computes PSI, says a shifted window drifted (exit 7) and writes the drift table."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import pytest
from tests.integration.drift.support import SYMBOLS, export_bundles, features, register_champion
from tests.integration.drift.test_drift_pass import NOW, TRAIN_END, WINDOW, fill
from tests.integration.images.conftest import Docker
from tests.integration.k8s.conftest import one, pod_spec, rendered

from signalstack.devstack import MlflowServer
from signalstack.drift.job import EXIT_DRIFT
from signalstack.store.timescale import TimescaleStore

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(2700)]

MODELS = "/var/lib/signalstack/models"
TMPFS = ("--tmpfs", "/tmp:rw,nosuid,nodev,size=256m")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = export_bundles(
        tmp_path_factory.mktemp("drift-bundles"), features(1500, TRAIN_END, seed=1)
    )
    for p in [root, *root.rglob("*")]:  # readable by the image's uid 10001
        p.chmod(0o755 if p.is_dir() else 0o644)
    return root


@pytest.fixture
def shifted_store(timescale_db: Any) -> dict[str, str]:
    """A migrated database holding a shifted window; the drift job's TIMESCALE_* env for it."""
    store = TimescaleStore(timescale_db.dsn)
    store.migrate()
    try:
        fill(store, shift=True)
    finally:
        store.close()
    dsn = urlsplit(timescale_db.dsn)
    return {
        "STORE_TYPE": "timescale",
        "TIMESCALE_HOST": str(dsn.hostname),
        "TIMESCALE_PORT": str(dsn.port),
        "TIMESCALE_USER": str(dsn.username),
        "TIMESCALE_PASSWORD": str(dsn.password),
        "TIMESCALE_DATABASE": dsn.path.lstrip("/"),
    }


def run_drift(
    docker: Docker,
    image: str,
    env: dict[str, str],
    volumes: tuple[str, ...] = (),
    command: tuple[str, ...] = ("signalstack", "drift"),
) -> tuple[int, str, str]:
    """`signalstack drift` in the image at the time of the pass (``command``: the entrypoint
    and its arguments, e.g. the CronJob's), retraining off."""
    env = {**env, "MARKET_SYMBOLS": ",".join(SYMBOLS), "DRIFT_WINDOW_MINUTES": str(WINDOW),
           "DRIFT_RETRAIN": "off", "LOG_FORMAT": "console"}  # fmt: skip
    opts = ["--network", "host", *TMPFS, *volumes, "--entrypoint", command[0]]
    opts += [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
    done = docker.run(image, *command[1:], "--as-of", NOW.isoformat(), opts=opts, timeout=300)
    return done.returncode, done.stdout, done.stderr


def drift_rows(dsn: str) -> set[tuple[str, str]]:
    """(model, reference) of the drift rows the pass wrote."""
    with TimescaleStore(dsn) as store:
        got = store.drift_results(NOW - pd.Timedelta(hours=1), NOW + pd.Timedelta(hours=1))
    return {(f.split("/")[0], r) for f, r in zip(got["feature"], got["reference"], strict=True)}


def test_the_drift_image_runs_drift_from_a_mounted_model_dir(
    docker: Docker,
    images: dict[str, str],
    bundles: Path,
    shifted_store: dict[str, str],
    timescale_db: Any,
) -> None:
    config = json.loads(docker("image", "inspect", images["drift"]).stdout)[0]["Config"]
    assert config["Entrypoint"] == ["signalstack"] and config["Cmd"] == ["drift"]
    # the chart's CronJob: its image and its command (exit 7, a model drifted, is a success)
    cron = pod_spec(one(rendered("default"), "CronJob", "signalstack-drift"))
    assert cron is not None
    [container] = cron["containers"]
    assert container["image"].split(":")[0] == "signalstack/drift"
    assert container["args"] == ["drift"]
    code, out, err = run_drift(
        docker, images["drift"], {**shifted_store, "DRIFT_MODEL_DIR": MODELS},
        volumes=("-v", f"{bundles}:{MODELS}:ro"),
        command=(*container["command"], *container["args"]),
    )  # fmt: skip
    assert code == 0, out + err
    for name in ("regime", "direction", "anomaly"):
        assert f"{name} local: alert" in out, out
    assert "Traceback" not in err
    assert drift_rows(timescale_db.dsn) == {
        (m, f"{m} local run test-run") for m in ("regime", "direction", "anomaly")
    }


def test_the_drift_image_reads_the_mlflow_alias(
    docker: Docker,
    images: dict[str, str],
    bundles: Path,
    shifted_store: dict[str, str],
    timescale_db: Any,
    mlflow: MlflowServer,
) -> None:
    prefix = f"i{uuid.uuid4().hex[:8]}-"
    rows = features(5, TRAIN_END, seed=9)
    version = register_champion(mlflow.tracking_uri, bundles, prefix + "regime", rows)
    env = {**shifted_store, "MLFLOW_TRACKING_URI": mlflow.tracking_uri,
           "MLFLOW_MODEL_PREFIX": prefix}  # fmt: skip
    code, out, err = run_drift(docker, images["drift"], env)
    assert code == EXIT_DRIFT, out + err
    assert f"regime v{version}: alert" in out, out
    assert "anomaly: skipped, no 'champion' alias" in out  # direction and anomaly have none
    assert drift_rows(timescale_db.dsn) == {("regime", f"regime v{version} run test-run")}
