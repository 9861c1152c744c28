"""``POST /predict/{regime,direction,anomaly}``: by symbol (the store's latest rows, point in
time) or with explicit features; the response's fields; each bad-input class → 4xx naming it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.unit.serving.serving_helpers import (
    SEQUENCE_LENGTH,
    TestClient,
    Trained,
    feature_row,
)

from signalstack.features.columns import FEATURE_COLUMNS
from signalstack.inference.bundle import load_bundle


def session_rows(models: Trained, symbol: str, upto: pd.Timestamp | None = None) -> pd.DataFrame:
    f = models.frame
    f = f[f["symbol"] == symbol]
    if upto is not None:
        f = f[f["ts"] <= upto]
    day = f["ts"].dt.tz_convert("America/New_York").dt.date
    return f[day == day.iloc[-1]].reset_index(drop=True)


@pytest.mark.parametrize("name", ["regime", "direction", "anomaly"])
def test_by_symbol_predicts_the_latest_row_of_the_session(
    client: TestClient, models: Trained, name: str
) -> None:
    bundle = load_bundle(models.bundle_dir(name))
    version = client.get(f"/v2/models/{name}").json()["versions"][0]
    for symbol in ("AAA", "BBB"):
        rows = session_rows(models, symbol)
        r = client.post(f"/predict/{name}", json={"symbol": symbol})
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["model_name"] == name and got["model_version"] == version
        assert got["feature_set_version"] == 1 and got["symbol"] == symbol
        assert pd.Timestamp(got["ts"]) == rows["ts"].iloc[-1]
        want = bundle.predict(rows)[-1]  # every row of the session, the latest answered
        if name == "anomaly":
            assert got["score"] == pytest.approx(float(want), abs=1e-12)
            assert got["threshold"] == models.threshold
            assert got["is_anomaly"] is (float(want) > models.threshold)
        else:
            probs = list(got["probabilities"].values())
            np.testing.assert_allclose(probs, want, rtol=0, atol=1e-12)
            assert got["prediction"] == bundle.meta.classes[int(np.argmax(want))]
            assert list(got["probabilities"]) == list(bundle.meta.classes)


@pytest.mark.parametrize("name", ["regime", "direction", "anomaly"])
def test_as_of_is_point_in_time(client: TestClient, models: Trained, name: str) -> None:
    rows = session_rows(models, "AAA")
    cut = rows["ts"].iloc[SEQUENCE_LENGTH + 3]
    early = rows[rows["ts"] <= cut]
    # a cut between two rows reads the earlier one, never a later one
    as_of = (cut + pd.Timedelta(seconds=30)).isoformat()
    r = client.post(f"/predict/{name}", json={"symbol": "AAA", "as_of": as_of})
    assert r.status_code == 200, r.text
    assert pd.Timestamp(r.json()["ts"]) == cut
    want = load_bundle(models.bundle_dir(name)).predict(early)[-1]
    got = r.json().get("score") if name == "anomaly" else list(r.json()["probabilities"].values())
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    before = (models.frame["ts"].min() - pd.Timedelta(days=1)).isoformat()
    r = client.post(f"/predict/{name}", json={"symbol": "AAA", "as_of": before})
    assert r.status_code == 404 and "at or before" in r.json()["error"]


@pytest.mark.parametrize("name", ["regime", "direction", "anomaly"])
def test_explicit_features_equal_the_bundle(client: TestClient, models: Trained, name: str) -> None:
    rows = session_rows(models, "BBB").iloc[: SEQUENCE_LENGTH + 5]
    bundle = load_bundle(models.bundle_dir(name))
    body: dict[str, Any] = {
        "features": [feature_row(r) for _, r in rows.iterrows()],
        "ts": rows["ts"].iloc[-1].isoformat(),
        "feature_set_version": 1,
    }
    r = client.post(f"/predict/{name}", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["symbol"] is None and pd.Timestamp(got["ts"]) == rows["ts"].iloc[-1]
    want = bundle.predict(rows)[-1]
    value = got["score"] if name == "anomaly" else list(got["probabilities"].values())
    np.testing.assert_allclose(value, want, rtol=0, atol=1e-12)
    # one row (an object, not a list) is that row alone: for the LSTM, a sequence of one
    one = client.post(f"/predict/{name}", json={"features": feature_row(rows.iloc[-1])})
    assert one.status_code == 200, one.text
    want_one = bundle.predict(rows.iloc[-1:])[-1]
    v1 = one.json()["score"] if name == "anomaly" else list(one.json()["probabilities"].values())
    np.testing.assert_allclose(v1, want_one, rtol=0, atol=1e-12)
    assert one.json()["ts"] is None


def _post(client: TestClient, body: Any, name: str = "regime") -> tuple[int, str]:
    r = client.post(f"/predict/{name}", json=body)
    return r.status_code, r.json()["error"]


def test_bad_inputs_get_4xx_naming_the_problem(client: TestClient, models: Trained) -> None:
    row = feature_row(session_rows(models, "AAA").iloc[-1])
    partial = {k: v for k, v in row.items() if k != "volume_5m"}
    cases: list[tuple[Any, int, str]] = [
        ({"symbol": "ZZZ"}, 404, "no feature rows of feature_set_version 1 for symbol 'ZZZ'"),
        ({"symbol": "aapl"}, 422, "symbol: String should match pattern"),
        ({"symbol": "AAA", "features": row}, 422, "exactly one"),
        ({}, 422, "exactly one"),
        ({"features": partial}, 422, "missing features volume_5m"),
        ({"features": {**row, "spread": 1.0}}, 422, "unknown features spread"),
        ({"features": [row, partial]}, 422, "features[1]: missing features volume_5m"),
        ({"features": []}, 422, "give 1 to"),
        ({"features": {**row, "vwap_5m": "high"}}, 422, "vwap_5m"),
        ({"features": row, "feature_set_version": 2}, 422,
         "feature_set_version 2 given to the regime model"),
        ({"symbol": "AAA", "feature_set_version": 2}, 422, "feature_set_version 2"),
        ({"symbol": "AAA", "ts": "2025-11-20T15:00:00Z"}, 422, "ts goes with features"),
        ({"features": row, "as_of": "2025-11-20T15:00:00Z"}, 422, "as_of goes with symbol"),
        ({"symbol": "AAA", "as_of": "yesterday"}, 422, "as_of"),
        ({"symbol": "AAA", "extra": 1}, 422, "extra: Extra inputs are not permitted"),
    ]  # fmt: skip
    for body, status, says in cases:
        got_status, error = _post(client, body)
        assert got_status == status, (body, error)
        assert says in error, (says, error)


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_inf_features_get_422(client: TestClient, bad: str) -> None:
    values = ", ".join(f'"{c}": {bad if c == "volume_ratio" else "1.0"}' for c in FEATURE_COLUMNS)
    r = client.post(
        "/predict/anomaly",
        content='{"features": {' + values + "}}",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert "volume_ratio" in r.json()["error"] and "finite" in r.json()["error"]


def test_malformed_json_gets_400(client: TestClient) -> None:
    for text in (b'{"symbol": ', b"not json", b'{"symbol": "AAA",}'):
        r = client.post(
            "/predict/direction", content=text, headers={"content-type": "application/json"}
        )
        assert r.status_code == 400, r.text
        assert r.json()["error"].startswith("malformed JSON")


def test_oversized_bodies_get_413(app_factory: Any) -> None:
    client = app_factory(max_body_bytes=4096)
    big = {"features": {"vwap_5m": 1.0, "pad": "x" * 5000}}
    r = client.post("/predict/regime", json=big)
    assert r.status_code == 413 and "4096 bytes" in r.json()["error"]

    def chunks() -> Any:  # no Content-Length: counted as it arrives
        yield b'{"features": {"pad": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}}'

    r = client.post(
        "/predict/regime", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413, r.text
    ok = client.post("/predict/regime", json={"symbol": "AAA"})
    assert ok.status_code == 200
