"""Fitted models → serving bundles (``inference.bundle``), each checked against its training side.

Every export writes the bundle, loads it back the way the inference service does
(``load_bundle``: ONNX Runtime / xgboost on one thread) and compares its output on ``check_*``
with the training-side model; a difference above the format's tolerance raises
:class:`ExportMismatch` and the bundle is not to be used. Tolerances (max absolute difference,
measured by ``bench/export.py`` on models of realistic size and ×10–100 above what was seen):

- XGBoost → ONNX (onnxmltools): probabilities, float32 tree sums in another order: 1e-5.
- XGBoost → booster JSON: the same engine: 1e-6.
- Isolation Forest → ONNX (one ``TreeEnsembleRegressor``, see :func:`iforest_to_onnx`): score,
  1e-5.
- LSTM → ONNX (``torch.onnx.export``, softmax in the graph): probabilities, 1e-5.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import onnx
import torch
from onnx import TensorProto, helper

from signalstack.errors import SignalStackError
from signalstack.inference.bundle import (
    FORMATS,
    MODEL_FILES,
    ONNX_OUTPUTS,
    Bundle,
    BundleMeta,
    load_bundle,
    save_bundle,
)
from signalstack.training.lstm import DirectionLstm

TOLERANCES: Final[dict[tuple[str, str], float]] = {
    ("xgboost", "onnx"): 1e-5,
    ("xgboost", "xgboost-json"): 1e-6,
    ("iforest", "onnx"): 1e-5,
    ("lstm", "onnx"): 1e-5,
}
ONNX_OPSET: Final = 17
#: onnxmltools' XGBoost converter supports opsets up to 15
XGBOOST_ONNX_OPSET: Final = 15
INPUT_NAME: Final = "input"


class ExportMismatch(SignalStackError):  # noqa: N818 - the name the training code uses
    """The exported model's output differs from the training-side model's beyond tolerance."""

    def __init__(self, name: str, max_diff: float, tolerance: float) -> None:
        super().__init__(
            f"exported {name} model differs from its training-side model: max abs difference "
            f"{max_diff:.3g} > tolerance {tolerance:.3g}"
        )
        self.max_diff = max_diff
        self.tolerance = tolerance


def _meta_for(meta: BundleMeta, kind: str, fmt: str | None, **extra: Any) -> BundleMeta:
    if meta.kind != kind:
        raise ValueError(f"meta.kind is {meta.kind!r}; this export writes a {kind} model")
    fmt = fmt or meta.format
    if fmt not in FORMATS[kind]:
        raise ValueError(f"a {kind} model is exported as {', '.join(FORMATS[kind])}; not {fmt!r}")
    return dataclasses.replace(meta, format=fmt, model_file=MODEL_FILES[fmt], **extra)


def check_parity(
    bundle: Bundle,
    x: npt.ArrayLike,
    expected: npt.ArrayLike,
    tolerance: float,
) -> float:
    """Max abs difference of ``bundle.predict_prepared(x)`` from ``expected``; raises
    :class:`ExportMismatch` above ``tolerance`` (or on a shape difference)."""
    got = bundle.predict_prepared(x)
    want = np.asarray(expected, dtype=np.float64)
    if got.shape != want.shape:
        raise ExportMismatch(bundle.meta.name, math.inf, tolerance)
    diff = float(np.max(np.abs(got - want))) if got.size else 0.0
    if not diff <= tolerance:  # NaN fails too
        raise ExportMismatch(bundle.meta.name, diff, tolerance)
    return diff


def _save_and_check(
    directory: str | Path,
    meta: BundleMeta,
    model_bytes: bytes,
    check_x: npt.ArrayLike,
    expected: Callable[[], npt.ArrayLike],
) -> Bundle:
    """Check a copy in a scratch directory first, so ``directory`` only ever receives a bundle
    that passed (a failed export leaves a previous bundle there intact)."""
    tol = TOLERANCES[(meta.kind, meta.format)]
    with tempfile.TemporaryDirectory(prefix="bundle-check-") as tmp:
        save_bundle(tmp, meta, model_bytes)
        check_parity(load_bundle(tmp), check_x, expected(), tol)
    save_bundle(directory, meta, model_bytes)
    return load_bundle(directory)


# --- XGBoost --------------------------------------------------------------------------------


def xgboost_to_onnx(model: Any, width: int) -> bytes:
    """An ``XGBClassifier`` (multi:softprob, fitted on a numpy matrix) or its ``Booster`` → ONNX
    bytes with output ``probabilities`` ``(n, K)`` (onnxmltools' converter)."""
    from onnxmltools import convert_xgboost  # type: ignore[import-untyped]
    from onnxmltools.convert.common.data_types import (  # type: ignore[import-untyped]
        FloatTensorType,
    )

    booster = model.get_booster() if hasattr(model, "get_booster") else model
    proto = convert_xgboost(  # from the booster: the classifier's type is looked up exactly
        booster,
        initial_types=[(INPUT_NAME, FloatTensorType([None, width]))],
        target_opset=XGBOOST_ONNX_OPSET,
    )
    data: bytes = proto.SerializeToString()
    return data


def xgboost_to_json(model: Any) -> bytes:
    """The fitted booster as XGBoost's own JSON model."""
    return bytes(model.get_booster().save_raw(raw_format="json"))


def export_xgboost(
    model: Any,
    directory: str | Path,
    meta: BundleMeta,
    check_x: npt.ArrayLike,
    *,
    format: str | None = None,
) -> Bundle:
    """An ``xgboost.XGBClassifier`` (multi:softprob) fitted on the scaled matrix → a bundle in
    ``format`` (default: ``meta.format``), checked against ``model.predict_proba(check_x)``."""
    meta = _meta_for(meta, "xgboost", format)
    x = np.ascontiguousarray(check_x, dtype=np.float32)
    width = Bundle.width_of(meta)
    data = xgboost_to_onnx(model, width) if meta.format == "onnx" else xgboost_to_json(model)
    return _save_and_check(directory, meta, data, x, lambda: model.predict_proba(x))


# --- Isolation Forest -------------------------------------------------------------------------


def _average_path_length(n: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """c(n): the average path length of an unsuccessful search in a binary search tree of ``n``
    points (Liu et al. 2008), as scikit-learn's Isolation Forest defines it (0 for n ≤ 1, 1 for
    n = 2)."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def _float32_at_most(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """The largest float32 ≤ each value: for a float32 ``x``, ``x <= t32`` ⟺ ``x <= t``, so the
    float32 thresholds of ONNX split exactly as scikit-learn's float64 ones."""
    t32 = v.astype(np.float32)
    up = t32.astype(np.float64) > v
    t32[up] = np.nextafter(t32[up], np.float32(-np.inf))
    return t32


def iforest_to_onnx(model: Any, width: int) -> bytes:
    """A fitted ``sklearn.ensemble.IsolationForest`` → ONNX with output ``score`` ``(n,)`` =
    ``-model.score_samples(x)`` (higher = more anomalous).

    One ``TreeEnsembleRegressor`` holds every tree; a leaf's value is its path length as
    scikit-learn counts it (depth + c(samples in the leaf) − 1), summed over the trees, then
    ``score = 2 ** (-sum / (n_trees · c(max_samples)))``. skl2onnx's converter builds the same
    function from ~27 nodes per tree (5,410 for 200 trees), which costs milliseconds per call in
    ONNX Runtime; this graph has four (bench/export.py measures both)."""
    from onnx import numpy_helper

    keys = (
        "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
        "nodes_truenodeids", "nodes_falsenodeids", "target_treeids", "target_nodeids",
        "target_weights",
    )  # fmt: skip
    cols: dict[str, list[Any]] = {k: [] for k in keys}
    for t, (est, feats) in enumerate(
        zip(model.estimators_, model.estimators_features_, strict=True)
    ):
        tree = est.tree_
        left, right = tree.children_left, tree.children_right
        leaf = left == -1
        leaf_value = (
            np.asarray(tree.compute_node_depths(), dtype=np.float64)
            + _average_path_length(tree.n_node_samples)
            - 1.0
        )
        thresholds = _float32_at_most(np.asarray(tree.threshold, dtype=np.float64))
        features = np.asarray(feats)[np.where(leaf, 0, tree.feature)]
        nodes = np.arange(tree.node_count)
        cols["nodes_treeids"] += [t] * tree.node_count
        cols["nodes_nodeids"] += nodes.tolist()
        cols["nodes_featureids"] += np.where(leaf, 0, features).tolist()
        cols["nodes_values"] += np.where(leaf, 0.0, thresholds).tolist()
        cols["nodes_modes"] += ["LEAF" if f else "BRANCH_LEQ" for f in leaf]
        cols["nodes_truenodeids"] += np.where(leaf, 0, left).tolist()
        cols["nodes_falsenodeids"] += np.where(leaf, 0, right).tolist()
        cols["target_treeids"] += [t] * int(leaf.sum())
        cols["target_nodeids"] += nodes[leaf].tolist()
        cols["target_weights"] += leaf_value[leaf].tolist()
    cols["target_ids"] = [0] * len(cols["target_nodeids"])
    denominator = len(model.estimators_) * float(
        _average_path_length(np.array([model.max_samples_]))[0]
    )
    if denominator <= 0:
        raise ValueError("an Isolation Forest fitted on fewer than 2 samples per tree")
    k = np.array([-math.log(2.0) / denominator], dtype=np.float32)
    attrs: dict[str, Any] = {
        "n_targets": 1,
        "aggregate_function": "SUM",
        "post_transform": "NONE",
        **cols,
    }
    graph_nodes = [
        helper.make_node(
            "TreeEnsembleRegressor", [INPUT_NAME], ["path_sum"], domain="ai.onnx.ml", **attrs
        ),
        helper.make_node("Mul", ["path_sum", "k"], ["exponent"]),
        helper.make_node("Exp", ["exponent"], ["score_2d"]),
        helper.make_node("Reshape", ["score_2d", "flat"], [ONNX_OUTPUTS["iforest"]]),
    ]
    graph = helper.make_graph(
        graph_nodes,
        "isolation_forest",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info(ONNX_OUTPUTS["iforest"], TensorProto.FLOAT, [None])],
        initializer=[
            numpy_helper.from_array(k, "k"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat"),
        ],
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET), helper.make_opsetid("ai.onnx.ml", 3)],
        producer_name="signalstack",
    )
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    data: bytes = proto.SerializeToString()
    return data


def export_iforest(
    model: Any, directory: str | Path, meta: BundleMeta, check_x: npt.ArrayLike
) -> Bundle:
    """A ``sklearn.ensemble.IsolationForest`` fitted on the scaled matrix → an ONNX bundle whose
    score (``-score_samples``: higher = more anomalous) is checked on ``check_x``."""
    meta = _meta_for(meta, "iforest", None)
    x = np.ascontiguousarray(check_x, dtype=np.float32)
    data = iforest_to_onnx(model, Bundle.width_of(meta))
    return _save_and_check(directory, meta, data, x, lambda: -model.score_samples(x))


# --- LSTM -------------------------------------------------------------------------------------


class _Probabilities(torch.nn.Module):
    """The exported graph: the LSTM's logits → softmax, so ONNX returns probabilities."""

    def __init__(self, model: DirectionLstm) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=-1)


def lstm_to_onnx(model: DirectionLstm, sequence_length: int) -> bytes:
    """ONNX bytes of the LSTM with softmax, dynamic batch and sequence axes.

    The TorchScript-based exporter (``dynamo=False``): the torch.export-based one needs
    onnxscript, which is not a dependency; this one is deprecated but present in torch 2.15, and
    its output is byte-identical run to run (a test checks it). Its deprecation and tracer
    warnings are silenced here; the parity check is what proves the graph right."""
    wrapped = _Probabilities(model).eval()
    example = torch.zeros(2, sequence_length, model.width)
    out = ONNX_OUTPUTS["lstm"]
    with (
        tempfile.TemporaryDirectory(prefix="lstm-onnx-") as tmp,
        warnings.catch_warnings(),
        torch.no_grad(),
    ):
        warnings.simplefilter("ignore")
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            wrapped,
            (example,),
            path,
            input_names=[INPUT_NAME],
            output_names=[out],
            dynamic_axes={INPUT_NAME: {0: "batch", 1: "steps"}, out: {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
        return path.read_bytes()


def export_lstm(
    model: DirectionLstm, directory: str | Path, meta: BundleMeta, check_seq: npt.ArrayLike
) -> Bundle:
    """The LSTM → an ONNX bundle; ONNX Runtime's probabilities on ``check_seq``
    ``(n, sequence_length, width)`` must match torch's within 1e-5."""
    length = meta.sequence_length
    if length is None:
        raise ValueError("an lstm bundle needs meta.sequence_length")
    meta = _meta_for(meta, "lstm", None)
    x = np.ascontiguousarray(check_seq, dtype=np.float32)
    data = lstm_to_onnx(model, length)

    def reference() -> npt.NDArray[np.float64]:
        model.eval()
        with torch.no_grad():
            p = torch.softmax(model(torch.from_numpy(x)), dim=-1).double()
        probs: npt.NDArray[np.float64] = (p / p.sum(dim=1, keepdim=True)).numpy()
        return probs

    return _save_and_check(directory, meta, data, x, reference)


__all__ = [
    "TOLERANCES",
    "ExportMismatch",
    "check_parity",
    "export_iforest",
    "export_lstm",
    "export_xgboost",
    "iforest_to_onnx",
    "lstm_to_onnx",
    "xgboost_to_json",
    "xgboost_to_onnx",
]
