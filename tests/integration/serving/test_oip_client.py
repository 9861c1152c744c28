"""A standard Open Inference Protocol v2 client, Triton's ``tritonclient.http`` (KServe v2
REST), against ``signalstack serve`` run as its own process on a loopback port, with a bundle
directory and a feature store: health, metadata, readiness, inference on all three models
(answers equal to the bundles'), and a bad request surfacing as the client's error with the
server's message. Then /predict by symbol over the same server."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from tests.integration.serving.serve_process import free_port, start_serve, stop, wait_ready
from tests.unit.serving.serving_helpers import Trained, copy_bundles, trained
from tritonclient.utils import InferenceServerException

from signalstack.features.columns import FEATURE_COLUMNS
from signalstack.inference.bundle import load_bundle

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Trained]]:
    models = trained()
    root = tmp_path_factory.mktemp("oip")
    store = root / "features.duckdb"
    shutil.copy(models.store_path, store)  # a file of its own: DuckDB locks it per process
    port = free_port()
    log = root / "serve.log"
    proc = start_serve(sys.executable, copy_bundles(root / "models"), store, port, log)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}", log)
        yield f"127.0.0.1:{port}", models
    finally:
        stop(proc)


def inputs_for(rows: pd.DataFrame) -> list[triton.InferInput]:
    out = []
    for c in FEATURE_COLUMNS:
        t = triton.InferInput(c, [len(rows)], "FP64")
        t.set_data_from_numpy(rows[c].to_numpy(np.float64), binary_data=False)
        out.append(t)
    return out


def test_tritonclient_health_metadata_and_inference(server: tuple[str, Trained]) -> None:
    url, models = server
    client = triton.InferenceServerClient(url=url)
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["name"] == "signalstack"
    f = models.frame
    rows = f[f["symbol"] == "BBB"].iloc[30:50].reset_index(drop=True)
    # NaN is refused (JSON has no NaN): these rows are past the session's first 20 minutes
    assert not rows[list(FEATURE_COLUMNS)].isna().any(axis=None)
    for name, outputs in (("regime", ("probabilities", "label")),
                          ("direction", ("probabilities", "label")),
                          ("anomaly", ("score", "is_anomaly"))):  # fmt: skip
        meta = client.get_model_metadata(name)
        assert [t["name"] for t in meta["outputs"]] == list(outputs)
        version = meta["versions"][0]
        assert client.is_model_ready(name) and client.is_model_ready(name, version)
        requested = [triton.InferRequestedOutput(o, binary_data=False) for o in outputs]
        result = client.infer(name, inputs_for(rows), outputs=requested, request_id="r1")
        assert result.get_response()["model_version"] == version
        want = load_bundle(models.bundle_dir(name)).predict(rows)
        got = result.as_numpy(outputs[0])
        assert got is not None and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
        flags = result.as_numpy(outputs[1])
        assert flags is not None and len(flags) == len(rows)
    client.close()


def test_tritonclient_sees_the_servers_error_message(server: tuple[str, Trained]) -> None:
    url, models = server
    client = triton.InferenceServerClient(url=url)
    rows = models.frame.iloc[40:42]
    partial = [t for t in inputs_for(rows) if t.name() != "volume_ratio"]
    with pytest.raises(InferenceServerException, match="missing features volume_ratio"):
        client.infer("regime", partial)
    with pytest.raises(InferenceServerException, match="unknown model 'sentiment'"):
        client.infer("sentiment", inputs_for(rows))
    assert not client.is_model_ready("regime", "no-such-version")
    client.close()


def test_predict_by_symbol_over_the_same_server(server: tuple[str, Trained]) -> None:
    url, _ = server
    for name in ("regime", "direction", "anomaly"):
        r = httpx.post(f"http://{url}/predict/{name}", json={"symbol": "AAA"}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["symbol"] == "AAA" and r.json()["model_name"] == name
    r = httpx.get(f"http://{url}/metrics", timeout=30)
    assert 'signalstack_serving_model_info{feature_set_version="1",kind="lstm"' in r.text
