"""The Open Inference Protocol v2 routes through the app: health, metadata, readiness, infer
on named tensors (answers equal to the bundle's own), and each bad-input class → 400/404 with a
message that names what is wrong."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.unit.serving.serving_helpers import DIRECTIONS, REGIMES, TestClient, Trained

from signalstack.features.columns import FEATURE_COLUMNS
from signalstack.inference.bundle import load_bundle


def tensors(rows: pd.DataFrame, **overrides: Any) -> list[dict[str, Any]]:
    """One FP64 tensor per feature column; NaN → null."""
    out = []
    for c in FEATURE_COLUMNS:
        data = [None if pd.isna(v) else float(v) for v in rows[c]]
        out.append({"name": c, "shape": [len(rows)], "datatype": "FP64", "data": data})
    for t in out:
        t.update(overrides.get(t["name"], {}))
    return out


def rows_of(models: Trained, symbol: str = "AAA", n: int = 20, skip: int = 40) -> pd.DataFrame:
    f = models.frame
    return f[f["symbol"] == symbol].iloc[skip : skip + n].reset_index(drop=True)


def test_server_health_and_metadata(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get("/v2").json()
    assert meta["name"] == "signalstack" and meta["extensions"] == []


@pytest.mark.parametrize(
    ("name", "outputs"),
    [
        ("regime", {"probabilities": [-1, 3], "label": [-1]}),
        ("direction", {"probabilities": [-1, 3], "label": [-1]}),
        ("anomaly", {"score": [-1], "is_anomaly": [-1]}),
    ],
)
def test_model_metadata_and_readiness(
    client: TestClient, models: Trained, name: str, outputs: dict[str, list[int]]
) -> None:
    meta = client.get(f"/v2/models/{name}").json()
    version = meta["versions"][0]
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        *[(c, "FP64", [-1]) for c in FEATURE_COLUMNS],
        ("feature_set_version", "INT64", [-1]),
    ]
    assert {t["name"]: t["shape"] for t in meta["outputs"]} == outputs
    assert meta["parameters"]["feature_set_version"] == 1
    assert client.get(f"/v2/models/{name}/versions/{version}").json() == meta
    assert client.get(f"/v2/models/{name}/ready").json() == {"name": name, "ready": True}
    r = client.get(f"/v2/models/{name}/versions/{version}/ready")
    assert r.status_code == 200 and r.json()["ready"] is True
    r = client.get(f"/v2/models/{name}/versions/not-{version}/ready")
    assert r.status_code == 404 and f"no version 'not-{version}'" in r.json()["error"]
    r = client.get(f"/v2/models/{name}/versions/not-{version}")
    assert r.status_code == 404


@pytest.mark.parametrize("name", ["regime", "direction", "anomaly"])
def test_infer_equals_the_bundle(client: TestClient, models: Trained, name: str) -> None:
    rows = rows_of(models)
    want = load_bundle(models.bundle_dir(name)).predict(rows)
    version = client.get(f"/v2/models/{name}").json()["versions"][0]
    body = {"id": "req-1", "inputs": tensors(rows)}
    for path in (f"/v2/models/{name}/infer", f"/v2/models/{name}/versions/{version}/infer"):
        r = client.post(path, json=body)
        assert r.status_code == 200, r.text
        got = r.json()
        assert (got["model_name"], got["model_version"], got["id"]) == (name, version, "req-1")
        out = {o["name"]: o for o in got["outputs"]}
        if name == "anomaly":
            assert out["score"]["shape"] == [len(rows)]
            np.testing.assert_allclose(out["score"]["data"], want, rtol=0, atol=1e-12)
            assert out["is_anomaly"]["data"] == [bool(s > models.threshold) for s in want]
        else:
            assert out["probabilities"]["shape"] == [len(rows), 3]
            probs = np.asarray(out["probabilities"]["data"]).reshape(len(rows), 3)
            np.testing.assert_allclose(probs, want, rtol=0, atol=1e-12)
            classes = DIRECTIONS if name == "direction" else REGIMES
            assert out["label"]["data"] == [classes[i] for i in want.argmax(axis=1)]


def test_infer_takes_nested_data_requested_outputs_and_the_feature_set(
    client: TestClient, models: Trained
) -> None:
    rows = rows_of(models, n=3)
    ts = tensors(rows)
    for t in ts:  # [n, 1] with nested rows is one value per row too
        t["shape"], t["data"] = [3, 1], [[v] for v in t["data"]]
    ts.append({"name": "feature_set_version", "shape": [1], "datatype": "INT64", "data": [1]})
    r = client.post("/v2/models/regime/infer", json={"inputs": ts, "outputs": [{"name": "label"}]})
    assert r.status_code == 200, r.text
    assert [o["name"] for o in r.json()["outputs"]] == ["label"]
    assert "id" not in r.json()  # absent, not null: OIP clients read what is there


def _infer(client: TestClient, body: Any, name: str = "regime", **kw: Any) -> tuple[int, str]:
    r = client.post(f"/v2/models/{name}/infer", json=body, **kw)
    return r.status_code, r.json()["error"]


def test_bad_inputs_get_400_naming_the_problem(client: TestClient, models: Trained) -> None:
    rows = rows_of(models, n=2)
    ok = tensors(rows)

    def without(name: str) -> list[dict[str, Any]]:
        return [t for t in ok if t["name"] != name]

    cases: list[tuple[Any, str]] = [
        ({"inputs": without("volume_ratio")}, "missing features volume_ratio"),
        ({"inputs": [*ok, {"name": "bogus", "shape": [2], "datatype": "FP64", "data": [1, 2]}]},
         "unknown input 'bogus'"),
        ({"inputs": [*ok, ok[0]]}, "input 'vwap_5m' is given twice"),
        ({"inputs": tensors(rows, vwap_5m={"datatype": "BYTES", "data": ["a", "b"]})},
         "datatype 'BYTES'"),
        ({"inputs": tensors(rows, vwap_5m={"datatype": "FP64", "data": ["a", "b"]})},
         "value 0 is 'a', not a number"),
        ({"inputs": tensors(rows, vwap_5m={"shape": [3]})}, "shape [3] holds 3 values; data has 2"),
        ({"inputs": tensors(rows, vwap_5m={"shape": [1, 2]})}, "one value per row"),
        ({"inputs": tensors(rows, vwap_5m={"shape": [-2]})}, "negative dimension"),
        ({"inputs": tensors(rows, vwap_5m={"shape": [1], "data": [1.0]})},
         "inputs differ in length"),
        ({"inputs": [{**t, "shape": [0], "data": []} for t in ok]}, "no rows"),
        ({"inputs": [*ok, {"name": "feature_set_version", "shape": [1], "datatype": "INT64",
                           "data": [2]}]}, "feature_set_version 2 given to the regime model"),
        ({"inputs": [*ok, {"name": "feature_set_version", "shape": [1], "datatype": "FP32",
                           "data": [1]}]}, "it is INT64"),
        ({"inputs": ok, "outputs": [{"name": "nope"}]}, "unknown output 'nope'"),
        ({"inputs": "nope"}, "inputs: Input should be a valid list"),
        ({}, "inputs: Field required"),
    ]  # fmt: skip
    for body, says in cases:
        status, error = _infer(client, body)
        assert status == 400, (body, error)
        assert says in error, (says, error)


def test_nan_inf_and_malformed_json_get_400(client: TestClient, models: Trained) -> None:
    rows = rows_of(models, n=1)
    for bad in ("NaN", "Infinity", "-Infinity"):
        body = tensors(rows)
        text = '{"inputs": ' + str(body).replace("'", '"').replace("None", "null") + "}"
        text = text.replace('"data": [', f'"data": [{bad}, ', 1).replace(
            '"shape": [1]', '"shape": [2]', 1
        )
        r = client.post(
            "/v2/models/regime/infer", content=text, headers={"content-type": "application/json"}
        )
        assert r.status_code == 400, r.text
        assert "must be finite" in r.json()["error"] and "vwap_5m" in r.json()["error"]
    r = client.post(
        "/v2/models/regime/infer",
        content=b'{"inputs": [',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"].startswith("malformed JSON")


def test_an_integer_too_large_for_a_float_is_a_400(client: TestClient, models: Trained) -> None:
    body = tensors(rows_of(models, n=1))
    body[0]["data"] = [10**400]  # valid JSON; float() overflows
    r = client.post("/v2/models/regime/infer", json={"inputs": body})
    assert r.status_code == 400, r.text
    assert "does not fit a 64-bit float" in r.json()["error"]


def test_unknown_model_version_and_binary_extension(client: TestClient, models: Trained) -> None:
    body = {"inputs": tensors(rows_of(models, n=1))}
    status, error = _infer(client, body, name="nope")
    assert status == 404 and "unknown model 'nope'" in error
    r = client.post("/v2/models/regime/versions/0/infer", json=body)
    assert r.status_code == 404 and "no version '0'" in r.json()["error"]
    r = client.get("/v2/models/nope")
    assert r.status_code == 404
    r = client.get("/v2/models/nope/ready")
    assert r.status_code == 404
    status, error = _infer(client, body, headers={"Inference-Header-Content-Length": "10"})
    assert status == 400 and "binary tensor data extension is not supported" in error
    r = client.get("/v2/no/such/route")
    assert r.status_code == 404 and "no route GET /v2/no/such/route" in r.json()["error"]


def test_null_is_an_undefined_feature_as_in_the_store(client: TestClient, models: Trained) -> None:
    """Early in a session the store holds NULL for 15-minute windows; null means the same here
    and the answer equals the bundle's on the NaN row."""
    f = models.frame
    first = f[f["symbol"] == "AAA"].iloc[:1].reset_index(drop=True)
    assert first[list(FEATURE_COLUMNS)].isna().any(axis=None)
    r = client.post("/v2/models/anomaly/infer", json={"inputs": tensors(first)})
    assert r.status_code == 200, r.text
    want = load_bundle(models.bundle_dir("anomaly")).predict(first)
    score = r.json()["outputs"][0]["data"][0]
    assert math.isclose(score, float(want[0]), abs_tol=1e-12)


def test_infer_reads_json_whatever_the_content_type(client: TestClient, models: Trained) -> None:
    """tritonclient sends its JSON request without Content-Type application/json."""
    body = json.dumps({"inputs": tensors(rows_of(models, n=2))}).encode()
    for headers in ({"content-type": "application/octet-stream"}, {}):
        r = client.post("/v2/models/regime/infer", content=body, headers=headers)
        assert r.status_code == 200, r.text
