"""The pyfunc wrapper's pure parts: sequence groups from the frame, the output frame."""

from __future__ import annotations

import numpy as np
import pandas as pd

from signalstack.training.mlflow_model import group_keys, model_examples, prediction_frame


def test_groups_are_symbol_and_session_together() -> None:
    frame = pd.DataFrame({"symbol": ["A", "A", "B"], "session": ["d1", "d2", "d1"], "x": 1.0})
    assert list(group_keys(frame)) == ["A|d1", "A|d2", "B|d1"]  # type: ignore[arg-type]
    assert list(group_keys(frame[["session", "x"]])) == ["d1", "d2", "d1"]  # type: ignore[arg-type]
    assert group_keys(frame[["x"]]) is None


def test_prediction_frame_has_a_column_per_class_or_a_score() -> None:
    proba = np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    out = prediction_frame(("down", "flat", "up"), proba, pd.Index([7, 9]))
    assert list(out.columns) == ["down", "flat", "up"] and list(out.index) == [7, 9]
    np.testing.assert_array_equal(out.to_numpy(), proba)
    score = prediction_frame((), np.array([0.4, 0.9]))
    assert list(score.columns) == ["score"] and score["score"].tolist() == [0.4, 0.9]


def test_the_signature_carries_the_feature_set_and_a_sequence_models_groups() -> None:
    x = pd.DataFrame({"ret": [0.1, np.nan], "vol": [1.0, 2.0]})
    proba = np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    meta = {"feature_set_version": 2, "classes": ["down", "flat", "up"], "sequence_length": None}
    example, sig = model_examples(meta, x, proba)
    assert example["feature_set_version"].tolist() == [2, 2] and "feature_set_version" not in x
    assert sig.inputs.input_names() == ["ret", "vol", "feature_set_version"]
    fsv = next(c for c in sig.inputs.inputs if c.name == "feature_set_version")
    assert fsv.required and fsv.type.name == "long"
    assert sig.outputs.input_names() == ["down", "flat", "up"]

    _, seq = model_examples({**meta, "sequence_length": 30}, x, proba)
    optional = {c.name for c in seq.inputs.inputs if not c.required}
    assert optional == {"ret", "symbol", "session"}  # MLflow: a column with NaN is optional

    _, anomaly = model_examples({"feature_set_version": 1, "classes": []}, x, np.array([0.1, 2.0]))
    assert anomaly.outputs.input_names() == ["score"]
