"""The tracking server is a real MLflow server with a SQL store and an artifact root."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

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


def test_template_store_built_by_two_processes_at_once(tmp_path: Path) -> None:
    """A session and its lifecycle test's child session may both build the migrated template
    store at once (a CI failure: one renamed the other's temporary file away). Both must get it."""
    code = "from signalstack.devstack.mlflow import template_db\nprint(template_db())\n"
    env = {**os.environ, "SIGNALSTACK_CACHE_DIR": str(tmp_path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for proc, (_out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err[-2000:]
    paths = {out.strip() for out, _ in outs}
    assert len(paths) == 1
    store = Path(paths.pop())
    with sqlite3.connect(store) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"experiments", "runs", "registered_models", "alembic_version"} <= tables
    assert [p.name for p in store.parent.iterdir() if p.suffix == ".tmp"] == []
