"""Models from the MLflow registry (the real server): the API loads the version the alias
``champion`` points at, and when the alias moves it hot-swaps to the new version while a
client (its own process) keeps asking — no request fails, answers switch once."""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import mlflow as ml
import numpy as np
import pytest
from tests.unit.serving.serving_helpers import hammer, running_server, trained

from signalstack.config import ServingSettings, Settings
from signalstack.devstack import MlflowServer
from signalstack.features.columns import FEATURE_COLUMNS
from signalstack.inference.bundle import META_FILE, load_bundle
from signalstack.serving.app import create_app
from signalstack.serving.repository import ModelRepository, RegistrySource
from signalstack.store.duckdb import DuckDBStore
from signalstack.training.registry import ModelRegistry

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def wait_until(check: Any, what: str, timeout_s: float = 60.0) -> None:
    pause = threading.Event()
    for _ in range(int(timeout_s / 0.05)):
        if check():
            return
        pause.wait(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def log_version(registry: ModelRegistry, name: str, bundle: Path, tag: str, tmp: Path) -> str:
    """The regime bundle re-exported under another run id: a new registered version."""
    d = tmp / f"bundle-{tag}"
    shutil.copytree(bundle, d)
    meta = json.loads((d / META_FILE).read_text())
    meta["training"] = {**meta["training"], "run_id": tag}
    (d / META_FILE).write_text(json.dumps(meta))
    rows = trained().frame[list(FEATURE_COLUMNS)].iloc[40:45].astype(np.float64)
    with ml.start_run():
        return registry.log_candidate(name, d, rows, load_bundle(d).predict(rows))


def test_the_alias_moves_and_the_api_swaps_without_a_failed_request(
    mlflow: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = trained()
    prefix = f"s{uuid.uuid4().hex[:8]}-"
    name = prefix + "regime"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow.tracking_uri)
    ml.set_tracking_uri(mlflow.tracking_uri)
    ml.set_experiment(f"serving-{prefix}")
    try:
        registry = ModelRegistry(mlflow.tracking_uri)
        v1 = log_version(registry, name, models.bundle_dir("regime"), "one", tmp_path)
        v2 = log_version(registry, name, models.bundle_dir("regime"), "two", tmp_path)
    finally:
        ml.set_tracking_uri(None)  # type: ignore[arg-type]
    registry.client.set_registered_model_alias(name, "champion", v1)

    source = RegistrySource(mlflow.tracking_uri, alias="champion", prefix=prefix)
    repo = ModelRepository(source, ("regime",), interval_s=0.2)
    settings = Settings(serving=ServingSettings(models="regime"))
    shutil.copy(models.store_path, tmp_path / "features.duckdb")
    store = DuckDBStore(str(tmp_path / "features.duckdb"))
    try:
        with running_server(create_app(settings, repo, store)) as url:
            assert repo.wait_ready(60), repo.describe()
            assert repo.get("regime").version == v1
            assert repo.get("regime").source == f"models:/{name}/{v1}"
            client = hammer(url, 5000, ("regime",))
            assert client.stdout is not None
            answers: list[list[Any]] = []
            try:
                for line in client.stdout:
                    answers.append(json.loads(line))
                    if len(answers) == 5:
                        break
                registry.client.set_registered_model_alias(name, "champion", v2)
                for line in client.stdout:
                    answers.append(json.loads(line))
                    if answers[-1][2] == v2 and len(answers) >= 10:
                        break
                    assert len(answers) < 5000, "the API never answered from the new version"
            finally:
                client.terminate()
                client.wait(30)
        assert [a for a in answers if a[1] != 200] == []
        versions = [a[2] for a in answers]
        switch = versions.index(v2)
        assert set(versions[:switch]) == {v1} and set(versions[switch:]) == {v2}
        assert repo.get("regime").version == v2
    finally:
        repo.stop()
        store.close()
