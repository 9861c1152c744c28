"""The serving artifact: a directory with ``bundle.json`` (:class:`BundleMeta`) and one model file.

Training writes a bundle (``signalstack.training.export``), the inference service loads it with
:func:`load_bundle` and calls :meth:`Bundle.predict` on stored feature rows. The meta carries
everything needed to turn those rows into the model's input exactly as at training time: the
feature set, the input definition (``inputs.InputSpec``), the fold-fitted ``Scaler``, the LSTM's
sequence length — plus the PSI reference distribution for the drift job and the training record.

Formats (chosen by ``bench/export.py``; docs/ARCHITECTURE.md "Model export formats"): every
model is served through ONNX Runtime by default; an XGBoost model may also be a native booster
JSON file (``xgboost-json``), run by xgboost. This module imports numpy and onnxruntime only —
never torch, scikit-learn, mlflow or pandas — and xgboost only when such a bundle is loaded
(``import xgboost`` itself pulls in scikit-learn, pandas and scipy when they are installed).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from signalstack.errors import SignalStackError
from signalstack.inference.inputs import Scaler, input_spec, sequences

F8 = npt.NDArray[np.float64]
F4 = npt.NDArray[np.float32]

SCHEMA_VERSION: Final = 1
META_FILE: Final = "bundle.json"
KINDS: Final = ("xgboost", "lstm", "iforest")
#: formats a kind may be stored in; the first is the default (the measured choice)
FORMATS: Final[dict[str, tuple[str, ...]]] = {
    "xgboost": ("onnx", "xgboost-json"),
    "lstm": ("onnx",),
    "iforest": ("onnx",),
}
MODEL_FILES: Final[dict[str, str]] = {"onnx": "model.onnx", "xgboost-json": "model.json"}
#: the ONNX output a bundle reads: class probabilities, or the anomaly score
ONNX_OUTPUTS: Final[dict[str, str]] = {
    "xgboost": "probabilities",
    "lstm": "probabilities",
    "iforest": "score",
}


class BundleError(SignalStackError):
    """A bundle directory that cannot be served: the message says what is wrong with it."""


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, kw_only=True)
class BundleMeta:
    """``bundle.json``: what the model is and how its input is built (JSON round-trip)."""

    name: str  # "regime" | "direction" | "anomaly"
    kind: str  # "xgboost" | "lstm" | "iforest"
    format: str  # "onnx" | "xgboost-json"
    model_file: str
    feature_set_version: int
    feature_columns: tuple[str, ...]
    input_names: tuple[str, ...]
    scaler: Mapping[str, Any]  # Scaler.to_dict()
    classes: tuple[str, ...]  # () for the anomaly model
    sequence_length: int | None = None  # lstm only
    psi_reference: Mapping[str, Any]  # drift.psi reference_distribution(...).to_dict()
    training: Mapping[str, Any]  # run id, data range, dataset digest, seed, metrics...
    schema_version: int = SCHEMA_VERSION
    created_at: str = field(default_factory=_utc_now)

    @classmethod
    def for_model(
        cls,
        *,
        name: str,
        kind: str,
        feature_set_version: int,
        scaler: Scaler,
        classes: Sequence[str],
        psi_reference: Mapping[str, Any],
        training: Mapping[str, Any],
        sequence_length: int | None = None,
        format: str | None = None,
    ) -> BundleMeta:
        """A meta with the feature columns and input names of the feature set and the kind's
        default format and model file name."""
        if kind not in FORMATS:
            raise BundleError(f"unknown model kind {kind!r} (known: {', '.join(KINDS)})")
        fmt = format or FORMATS[kind][0]
        spec = input_spec(feature_set_version)
        return cls(
            name=name,
            kind=kind,
            format=fmt,
            model_file=MODEL_FILES.get(fmt, "model"),
            feature_set_version=feature_set_version,
            feature_columns=spec.feature_columns,
            input_names=spec.input_names,
            scaler=scaler.to_dict(),
            classes=tuple(classes),
            sequence_length=sequence_length,
            psi_reference=psi_reference,
            training=training,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: numpy scalars and arrays become numbers and lists, tuples lists, and a
        non-finite number (a metric undefined on the holdout) ``None``."""
        out: dict[str, Any] = _json_safe(asdict(self))
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BundleMeta:
        """Validated: an unknown schema version, kind or format, a field missing or unknown,
        inputs that are not those of the feature set → :class:`BundleError`."""
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise BundleError(
                f"bundle schema_version {version!r} is not supported (this build reads "
                f"{SCHEMA_VERSION}); re-export the model with this version of signalstack"
            )
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise BundleError(f"bundle.json has unknown fields: {', '.join(unknown)}")
        try:
            kw = dict(d)
            for k in ("feature_columns", "input_names", "classes"):
                kw[k] = tuple(str(v) for v in d[k])
            meta = cls(**kw)
        except (KeyError, TypeError) as err:
            raise BundleError(f"bundle.json is incomplete or malformed: {err}") from None
        meta.validate()
        return meta

    @classmethod
    def from_json(cls, text: str) -> BundleMeta:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as err:
            raise BundleError(f"bundle.json is not JSON: {err}") from None
        if not isinstance(d, dict):
            raise BundleError("bundle.json must hold a JSON object")
        return cls.from_dict(d)

    def validate(self) -> None:
        """Consistency of the fields with each other and with the feature set's definition."""
        if self.kind not in FORMATS:
            raise BundleError(f"unknown model kind {self.kind!r} (known: {', '.join(KINDS)})")
        if self.format not in FORMATS[self.kind]:
            allowed = ", ".join(FORMATS[self.kind])
            raise BundleError(
                f"unknown format {self.format!r} for a {self.kind} model (known: {allowed})"
            )
        if not self.model_file or Path(self.model_file).name != self.model_file:
            raise BundleError(f"model_file must be a plain file name; got {self.model_file!r}")
        try:
            spec = input_spec(self.feature_set_version)
            scaler = Scaler.from_dict(self.scaler)
        except (ValueError, KeyError, TypeError) as err:
            raise BundleError(f"bundle inputs: {err}") from None
        if (self.feature_columns, self.input_names) != (spec.feature_columns, spec.input_names):
            raise BundleError(
                f"the bundle's feature columns / input names differ from feature_set_version "
                f"{self.feature_set_version}'s definition in this build"
            )
        if len(scaler.mean) != len(self.input_names):
            raise BundleError(
                f"scaler has {len(scaler.mean)} inputs; the feature set has {len(self.input_names)}"
            )
        if (self.kind == "iforest") != (not self.classes):
            raise BundleError("classes must be empty for an anomaly model and only for one")
        if (self.kind == "lstm") != (self.sequence_length is not None):
            raise BundleError("sequence_length is set for an lstm model and only for one")
        if self.sequence_length is not None and self.sequence_length < 1:
            raise BundleError("sequence_length must be at least 1")
        if self.kind == "lstm" and not scaler.indicators:
            # inputs.sequences pads with "every input missing": values 0, indicators 1
            raise BundleError("an lstm model's scaler must add missing indicators (padding)")


def _json_safe(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, np.ndarray):
        return _json_safe(v.tolist())
    if isinstance(v, list | tuple):
        return [_json_safe(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_bundle(directory: str | os.PathLike[str], meta: BundleMeta, model_bytes: bytes) -> Path:
    """Write the model file, then ``bundle.json`` (each to a temporary name, then renamed), so a
    reader never sees a meta without its model. Returns the directory."""
    meta.validate()
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    _write_atomic(d / meta.model_file, model_bytes)
    _write_atomic(d / META_FILE, meta.to_json().encode())
    for stale in set(MODEL_FILES.values()) - {meta.model_file}:  # a previous bundle's format
        (d / stale).unlink(missing_ok=True)
    return d


Runner = Callable[[F4], npt.NDArray[Any]]


def _onnx_runner(path: Path, output: str) -> Runner:
    opts = ort.SessionOptions()
    # serving runs many workers, one request at a time each: one thread per session
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        raise BundleError(f"{path.name} is not a model ONNX Runtime can load: {err}") from None
    outputs = [o.name for o in sess.get_outputs()]
    if output not in outputs:
        raise BundleError(f"{path.name} has no output {output!r} (outputs: {outputs})")
    input_name = sess.get_inputs()[0].name

    def run(x: F4) -> npt.NDArray[Any]:
        return np.asarray(sess.run([output], {input_name: x})[0])

    return run


def _xgboost_runner(path: Path) -> Runner:
    try:  # only for this format: its import pulls in scikit-learn and pandas
        import xgboost as xgb
    except ImportError:
        raise BundleError(
            f"{path.name} is an xgboost-json bundle and xgboost is not installed (the inference "
            "image serves ONNX bundles; export with the default format)"
        ) from None

    booster = xgb.Booster(params={"nthread": 1})
    try:
        booster.load_model(bytearray(path.read_bytes()))
    except xgb.core.XGBoostError as err:
        raise BundleError(f"{path.name} is not an XGBoost model: {err}") from None

    def run(x: F4) -> npt.NDArray[Any]:
        p = np.asarray(booster.inplace_predict(x))
        return np.column_stack([1.0 - p, p]) if p.ndim == 1 else p  # binary:logistic

    return run


class Bundle:
    """A loaded bundle: its meta and the model, run on one thread."""

    def __init__(self, meta: BundleMeta, runner: Runner) -> None:
        self.meta = meta
        self._run = runner
        self._spec = input_spec(meta.feature_set_version)
        self._scaler = Scaler.from_dict(meta.scaler)
        self.width = self._scaler.width

    @staticmethod
    def width_of(meta: BundleMeta) -> int:
        """Columns of the scaled matrix the meta's model takes."""
        return Scaler.from_dict(meta.scaler).width

    @property
    def is_classifier(self) -> bool:
        return bool(self.meta.classes)

    def prepare(self, features: Any, groups: npt.ArrayLike | None = None) -> F4:
        """Stored feature rows → the model's input: the scaled matrix ``(n, width)``, or for the
        LSTM the sequences ``(n, sequence_length, width)`` within ``groups`` (one key per row,
        rows of a group contiguous and in time order; ``None``: all rows one group)."""
        self._check_feature_set(features)
        x = self._scaler.transform(self._spec.transform(features))
        if self.meta.sequence_length is None:
            return x
        g = np.zeros(len(x), dtype=np.int8) if groups is None else np.asarray(groups)
        return sequences(x, g, self.meta.sequence_length, pad=self._scaler.missing_row())

    def predict(self, features: Any, groups: npt.ArrayLike | None = None) -> F8:
        """Class probabilities ``(n, len(classes))`` (rows sum to 1), or the anomaly score
        ``(n,)`` (higher = more anomalous), of stored feature rows: a DataFrame with the meta's
        feature columns, or an array with those columns in that order."""
        return self.predict_prepared(self.prepare(features, groups))

    def predict_last(self, features: Any) -> F8:
        """The prediction for the last row only, ``(1, len(classes))`` or ``(1,)``: what the API
        answers for one symbol. ``features``: that symbol's rows of the current session, oldest
        first (the LSTM reads the last ``sequence_length`` of them; other models the last row).
        Equal to ``predict(features)[-1:]`` without building every row's sequence."""
        self._check_feature_set(features)
        x = self._scaler.transform(self._spec.transform(features))
        if len(x) == 0:
            raise ValueError("no feature rows to predict from")
        length = self.meta.sequence_length
        if length is None:
            return self.predict_prepared(x[-1:])
        tail = x[-length:]
        seq = np.broadcast_to(self._scaler.missing_row(), (1, length, self.width)).copy()
        seq[0, length - len(tail) :] = tail
        return self.predict_prepared(seq)

    def predict_prepared(self, x: npt.ArrayLike) -> F8:
        """The model on an already prepared input (see :meth:`prepare`)."""
        arr = np.ascontiguousarray(x, dtype=np.float32)
        expected: tuple[int, ...] = (self.width,)
        if self.meta.sequence_length is not None:
            expected = (self.meta.sequence_length, self.width)
        if arr.ndim != 1 + len(expected) or arr.shape[1:] != expected:
            want = ", ".join(["n", *map(str, expected)])
            raise ValueError(
                f"{self.meta.name} model expects input of shape ({want}); got {arr.shape}"
            )
        if not np.isfinite(arr).all():
            raise ValueError("prepared model input must be finite (the scaler never makes NaN)")
        n = arr.shape[0]
        if n == 0:
            shape = (0, len(self.meta.classes)) if self.is_classifier else (0,)
            return np.zeros(shape, dtype=np.float64)
        out: F8 = np.asarray(self._run(arr), dtype=np.float64)
        if not self.is_classifier:
            return out.reshape(n)
        out = out.reshape(n, -1)
        out /= out.sum(axis=1, keepdims=True)  # float32 softmax → sums to 1 in float64
        return out

    def _check_feature_set(self, features: Any) -> None:
        if not hasattr(features, "columns") or "feature_set_version" not in features.columns:
            return
        want = self.meta.feature_set_version
        got = np.asarray(features["feature_set_version"], dtype=object)
        wrong = sorted({str(v) for v in got if _as_int(v) != want})
        if wrong:
            raise ValueError(
                f"features of feature_set_version {', '.join(wrong)} given to the "
                f"{self.meta.name} model, trained on feature_set_version {want}: a model is "
                "only fed the feature set it was trained on"
            )

    def _probe(self) -> None:
        """Run the model once on padding, so a model that does not fit its meta (input width,
        number of classes) fails at load time, not on the first request."""
        shape: tuple[int, ...] = (1, self.width)
        if self.meta.sequence_length is not None:
            shape = (1, self.meta.sequence_length, self.width)
        x = np.zeros(shape, dtype=np.float32)
        try:
            out = np.asarray(self._run(x))
        except Exception as err:  # ONNX Runtime / xgboost errors, whatever their type
            raise BundleError(
                f"the {self.meta.name} model does not take input of shape {shape}: {err}"
            ) from None
        want = len(self.meta.classes) if self.is_classifier else 1
        if out.size != want:
            raise BundleError(
                f"the {self.meta.name} model returns {out.size} values per row "
                f"(shape {out.shape}); its meta says {want}"
            )


def _as_int(v: Any) -> int | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return int(f) if np.isfinite(f) and f == int(f) else None


def load_bundle(directory: str | os.PathLike[str]) -> Bundle:
    """Read and validate ``bundle.json``, load the model on one thread and probe it once."""
    d = Path(directory)
    meta_path = d / META_FILE
    if not meta_path.is_file():
        raise BundleError(f"{d} is not a model bundle: {META_FILE} is missing")
    meta = BundleMeta.from_json(meta_path.read_text())
    model_path = d / meta.model_file
    if not model_path.is_file():
        raise BundleError(f"bundle {d}: model file {meta.model_file} is missing")
    if meta.format == "onnx":
        runner = _onnx_runner(model_path, ONNX_OUTPUTS[meta.kind])
    else:
        runner = _xgboost_runner(model_path)
    bundle = Bundle(meta, runner)
    bundle._probe()
    return bundle


__all__ = [
    "FORMATS",
    "KINDS",
    "META_FILE",
    "SCHEMA_VERSION",
    "Bundle",
    "BundleError",
    "BundleMeta",
    "load_bundle",
    "save_bundle",
]
