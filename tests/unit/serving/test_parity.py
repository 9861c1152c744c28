"""Predictions over HTTP equal the training-side models' outputs for the same features: the
fitted XGBoost classifier's ``predict_proba``, the Isolation Forest's ``-score_samples`` and
the torch LSTM's softmax, each on the inputs training builds (``inputs.InputSpec`` → the
fold's ``Scaler`` → ``sequences``), within the export tolerance."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from tests.unit.serving.serving_helpers import (
    SEQUENCE_LENGTH,
    TestClient,
    Trained,
    feature_row,
    session_keys,
)

from signalstack.features.columns import FEATURE_COLUMNS
from signalstack.inference.inputs import input_spec, sequences
from signalstack.training.export import TOLERANCES

N = 25  # rows of one session, from its open: padding, NULL features and full windows


def training_side(models: Trained, name: str, rows: pd.DataFrame) -> Any:
    scaler = models.scalers[name]  # the fitted one: a wrong scaler in a bundle shows here
    x = scaler.transform(input_spec(1).transform(rows))
    if name == "regime":
        return models.xgb.predict_proba(x)
    if name == "anomaly":
        return -models.iforest.score_samples(x)
    seq = sequences(x, session_keys(rows), SEQUENCE_LENGTH, pad=scaler.missing_row())
    with torch.no_grad():
        return torch.softmax(models.lstm(torch.from_numpy(seq)), dim=-1).double().numpy()


def first_rows(models: Trained, symbol: str) -> pd.DataFrame:
    f = models.frame[models.frame["symbol"] == symbol]
    day = f["ts"].dt.tz_convert("America/New_York").dt.date
    return f[day == day.iloc[-1]].iloc[:N].reset_index(drop=True)


@pytest.mark.parametrize("name", ["regime", "direction", "anomaly"])
def test_oip_and_predict_answers_equal_the_training_side_models(
    client: TestClient, models: Trained, name: str
) -> None:
    torch.set_num_threads(1)
    tol = TOLERANCES[({"regime": "xgboost", "direction": "lstm", "anomaly": "iforest"}[name],
                      "onnx")]  # fmt: skip
    rows = first_rows(models, "AAA")
    want = training_side(models, name, rows)

    inputs = [
        {"name": c, "shape": [N], "datatype": "FP64",
         "data": [None if pd.isna(v) else float(v) for v in rows[c]]}
        for c in FEATURE_COLUMNS
    ]  # fmt: skip
    r = client.post(f"/v2/models/{name}/infer", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    data = np.asarray(r.json()["outputs"][0]["data"])
    got = data if name == "anomaly" else data.reshape(N, 3)
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)

    # /predict answers the latest of the rows given: row by row, growing the session
    for k in (1, SEQUENCE_LENGTH - 1, N):
        body = {"features": [feature_row(r) for _, r in rows.iloc[:k].iterrows()]}
        r = client.post(f"/predict/{name}", json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        value = out["score"] if name == "anomaly" else list(out["probabilities"].values())
        np.testing.assert_allclose(value, want[k - 1], rtol=0, atol=tol)
