"""The serving install: a fresh environment with only the project and its ``serve`` extra
(``uv sync --frozen --extra serve --no-dev`` from uv's cache, offline) has no torch and no
training stack, and ``signalstack serve`` from it loads the three bundles and answers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from tests.integration.serving.serve_process import free_port, start_serve, stop, wait_ready
from tests.unit.serving.serving_helpers import copy_bundles, trained

from signalstack.features.columns import FEATURE_COLUMNS
from signalstack.inference.bundle import load_bundle

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
UV = ROOT / ".cache" / "uv" / "bin" / "uv"


def test_serve_extra_alone_serves_without_torch(tmp_path: Path) -> None:
    if not UV.is_file():
        pytest.fail(f"uv is not at {UV}: run `make setup`")
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(tmp_path / "venv")}
    env.pop("VIRTUAL_ENV", None)
    sync = subprocess.run(
        [str(UV), "sync", "--frozen", "--offline", "--extra", "serve", "--no-dev",
         "--no-default-groups", "--python", sys.executable],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert sync.returncode == 0, sync.stderr
    python = str(tmp_path / "venv" / "bin" / "python")
    probe = subprocess.run(
        [python, "-c", "import importlib.util as u, json; print(json.dumps({m: u.find_spec(m) "
         "is not None for m in ('torch', 'sklearn', 'xgboost', 'onnxruntime', 'mlflow')}))"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert probe.stdout.strip() == (
        '{"torch": false, "sklearn": false, "xgboost": false, "onnxruntime": true, "mlflow": true}'
    )

    models = trained()
    shutil.copy(models.store_path, tmp_path / "features.duckdb")
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start_serve(
        python, copy_bundles(tmp_path / "models"), tmp_path / "features.duckdb", port, log
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(proc, url, log)
        rows = models.frame.iloc[40:43]
        inputs = [
            {"name": c, "shape": [3], "datatype": "FP64", "data": rows[c].tolist()}
            for c in FEATURE_COLUMNS
        ]
        r = httpx.post(f"{url}/v2/models/direction/infer", json={"inputs": inputs}, timeout=30)
        assert r.status_code == 200, r.text
        got = np.asarray(r.json()["outputs"][0]["data"]).reshape(3, 3)
        want = load_bundle(models.bundle_dir("direction")).predict(rows)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
        r = httpx.post(f"{url}/predict/anomaly", json={"symbol": "AAA"}, timeout=30)
        assert r.status_code == 200, r.text
    finally:
        stop(proc)
