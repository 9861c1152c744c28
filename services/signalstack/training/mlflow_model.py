"""The MLflow pyfunc wrapper of a serving bundle, so a registered version loads with
``mlflow.pyfunc.load_model("models:/<name>@champion")`` as well as with ``load_bundle``.

The model's one artifact is the bundle directory (``bundle``); predictions come from the
bundle itself, so the pyfunc and the inference service compute the same thing.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from mlflow.models import ModelSignature
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


def prediction_frame(
    classes: Sequence[str], out: npt.ArrayLike, index: pd.Index | None = None
) -> pd.DataFrame:
    """A bundle's output → one column per class (probabilities), or ``score`` for an anomaly
    model (no classes): what :class:`BundleModel` returns."""
    arr = np.asarray(out, dtype=np.float64)
    if not classes:
        return pd.DataFrame({SCORE_COLUMN: arr.reshape(-1)}, index=index)
    return pd.DataFrame(arr.reshape(-1, len(classes)), index=index, columns=list(classes))


def model_examples(
    meta: Mapping[str, Any], input_example: pd.DataFrame, output_example: Any
) -> tuple[pd.DataFrame, ModelSignature]:
    """The input example and signature a bundle's pyfunc is logged with.

    MLflow hands the model only the columns of its signature, so whatever the bundle checks
    must be in it: ``feature_set_version`` is added (a required column, with the bundle's
    version in the example) so that the pyfunc refuses features of another version as the
    bundle does; a sequence model also accepts ``symbol`` and ``session`` (optional columns)
    to keep each window within one symbol's session. ``output_example`` may be
    ``Bundle.predict``'s array: it becomes the frame :class:`BundleModel` returns."""
    from mlflow.models import infer_signature
    from mlflow.types import ColSpec, Schema

    example = pd.DataFrame(input_example).copy()
    if "feature_set_version" not in example.columns:
        example["feature_set_version"] = np.int64(meta["feature_set_version"])
    if isinstance(output_example, np.ndarray):
        output_example = prediction_frame(tuple(meta.get("classes") or ()), output_example)
    with warnings.catch_warnings():  # "integer columns cannot hold missing values": by design
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        signature = infer_signature(example, output_example)
    if meta.get("sequence_length") is not None:
        inputs = list(signature.inputs.inputs)
        have = {c.name for c in inputs}
        inputs += [ColSpec("string", c, required=False) for c in GROUP_COLUMNS if c not in have]
        signature = ModelSignature(inputs=Schema(inputs), outputs=signature.outputs)
    return example, signature


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
        return prediction_frame(self.bundle.meta.classes, out, frame.index)


__all__ = [
    "GROUP_COLUMNS",
    "SCORE_COLUMN",
    "BundleModel",
    "group_keys",
    "model_examples",
    "prediction_frame",
]
