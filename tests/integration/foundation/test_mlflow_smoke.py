"""The tracking server is a real MLflow server with a SQL store and an artifact root."""

from __future__ import annotations

import uuid

import httpx
import pytest

from signalstack.devstack import MlflowServer

pytestmark = pytest.mark.integration


def test_log_run_and_register_model_with_alias(mlflow: MlflowServer, tmp_path: object) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow.tracking_uri, registry_uri=mlflow.tracking_uri)
    exp_id = client.create_experiment(f"smoke-{uuid.uuid4().hex[:8]}")
    run = client.create_run(exp_id)
    client.log_param(run.info.run_id, "max_depth", "4")
    for step, loss in enumerate([0.9, 0.5, 0.3]):
        client.log_metric(run.info.run_id, "loss", loss, step=step)
    client.set_terminated(run.info.run_id)

    name = f"regime-{uuid.uuid4().hex[:6]}"
    client.create_registered_model(name)
    mv = client.create_model_version(
        name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
    )
    client.set_registered_model_alias(name, "champion", mv.version)

    # Ask the server's REST API directly: the run and the alias are stored server-side.
    base = f"{mlflow.tracking_uri}/api/2.0/mlflow"
    r = httpx.get(f"{base}/runs/get", params={"run_id": run.info.run_id}, timeout=10)
    r.raise_for_status()
    data = r.json()["run"]["data"]
    assert {"key": "max_depth", "value": "4"} in data["params"]
    assert [m["value"] for m in data["metrics"] if m["key"] == "loss"] == [0.3]
    hist = httpx.get(
        f"{base}/metrics/get-history",
        params={"run_id": run.info.run_id, "metric_key": "loss"},
        timeout=10,
    ).json()["metrics"]
    assert [m["value"] for m in sorted(hist, key=lambda m: m["step"])] == [0.9, 0.5, 0.3]
    alias = httpx.get(
        f"{base}/registered-models/alias", params={"name": name, "alias": "champion"}, timeout=10
    )
    alias.raise_for_status()
    assert alias.json()["model_version"]["version"] == str(mv.version)
    assert alias.json()["model_version"]["run_id"] == run.info.run_id
