"""The MLflow pyfunc wrapper of a serving bundle, so a registered version loads with
``mlflow.pyfunc.load_model("models:/<name>@champion")`` as well as with ``load_bundle``.

The model's one artifact is the bundle directory (``bundle``); predictions come from the
bundle itself, so the pyfunc and the inference service compute the same thing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel, PythonModelContext

if TYPE_CHECKING:
    from signalstack.inference.bundle import Bundle

# Columns that say which rows form one sequence (the LSTM reads windows within a group).
GROUP_COLUMNS: Final = ("symbol", "session")
SCORE_COLUMN: Final = "score"


def group_keys(frame: pd.DataFrame) -> np.ndarray[Any, Any] | None:
    """One key per row from the :data:`GROUP_COLUMNS` the frame has (symbol and session
    together when both are there: a session alone repeats across symbols), else None."""
    present = [c for c in GROUP_COLUMNS if c in frame.columns]
    if not present:
        return None
    if len(present) == 1:
        return frame[present[0]].astype(str).to_numpy()
    keys = frame[present[0]].astype(str)
    for c in present[1:]:
        keys = keys + "|" + frame[c].astype(str)
    return keys.to_numpy()


def prediction_frame(bundle: Bundle, out: np.ndarray[Any, Any], index: pd.Index) -> pd.DataFrame:
    """Bundle output → one column per class (probabilities), or ``score`` for anomalies."""
    classes = tuple(bundle.meta.classes)
    if not classes:
        return pd.DataFrame({SCORE_COLUMN: np.asarray(out, dtype=np.float64).reshape(-1)}, index)
    proba = np.asarray(out, dtype=np.float64).reshape(len(index), len(classes))
    return pd.DataFrame(proba, index=index, columns=list(classes))


class BundleModel(PythonModel):
    """pyfunc over a bundle: features in (the bundle's ``feature_columns``, plus ``symbol``
    and ``session`` for sequence models), probabilities per class or ``score`` out."""

    bundle: Bundle | None = None

    def load_context(self, context: PythonModelContext) -> None:
        from signalstack.inference.bundle import load_bundle

        self.bundle = load_bundle(context.artifacts["bundle"])

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        if self.bundle is None:
            raise RuntimeError("BundleModel.predict before load_context")
        frame = pd.DataFrame(model_input)
        out = self.bundle.predict(frame, groups=group_keys(frame))
        return prediction_frame(self.bundle, out, frame.index)


__all__ = ["GROUP_COLUMNS", "SCORE_COLUMN", "BundleModel", "group_keys", "prediction_frame"]
