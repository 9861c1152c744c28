"""The data plane: health, metadata, Open Inference Protocol inference and ``/predict``,
free of any transport (the routers adapt HTTP to it; a gRPC servicer or the WebSocket stream
would call the same methods).

Every model runs the bundle's own path (``Bundle.predict`` / ``Bundle.predict_last``: stored
features → inputs → scaler → (sequence) → ONNX), so an answer equals the training-side model's
for the same features. Input problems raise :mod:`signalstack.serving.errors` types whose
message names what is wrong.

OIP tensors of a model (``GET /v2/models/{name}``): one ``FP64`` input per feature column,
shape ``[-1]`` (rows; ``null`` = undefined at that time, as the store's NULL), and an optional
``feature_set_version`` ``INT64`` input (``[1]`` or one per row) that must be the model's.
For the direction LSTM the rows are one symbol's session rows, oldest first, and row *i*'s
prediction reads the rows up to *i*. Outputs: ``probabilities`` ``FP64 [-1, K]`` and ``label``
``BYTES [-1]`` for the classifiers; ``score`` ``FP64 [-1]`` and ``is_anomaly`` ``BOOL [-1]``
(against the training threshold) for the anomaly model.

The live stream (:mod:`signalstack.serving.live`: ``WS /ws/predictions``, ``market.predictions``,
the ``predictions`` / ``anomalies`` tables) calls :meth:`DataPlane.predict_rows`, which returns
a :class:`Prediction` for one symbol's session rows, the unit it publishes and stores. When the
stream runs, its :class:`~signalstack.serving.cache.SessionCache` answers ``/predict`` by symbol
for the newest rows (no ``as_of``) from memory — only for symbols the feed delivers to this
replica (its partitions; the local feed: every symbol); a point-in-time request (``as_of``),
another replica's symbol, or one the cache cannot answer exactly reads the store.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from signalstack import __version__
from signalstack.serving.errors import (
    InvalidInputError,
    ModelNotReadyError,
    StoreUnavailableError,
    SymbolNotFoundError,
)
from signalstack.serving.repository import LoadedModel, ModelRepository
from signalstack.serving.schemas import (
    AnomalyPrediction,
    ClassPrediction,
    InferenceRequest,
    InferenceResponse,
    MetadataTensor,
    ModelMetadataResponse,
    PredictRequest,
    RequestInput,
    ResponseOutput,
    ServerMetadataResponse,
)

if TYPE_CHECKING:
    from signalstack.serving.cache import SessionCache
    from signalstack.serving.metrics import ServingMetrics
    from signalstack.store.base import Store

F8 = npt.NDArray[np.float64]

SERVER_NAME: Final = "signalstack"
FSV_INPUT: Final = "feature_set_version"
NUMERIC_DATATYPES: Final = frozenset(
    {"FP64", "FP32", "FP16", "INT8", "INT16", "INT32", "INT64",
     "UINT8", "UINT16", "UINT32", "UINT64"}
)  # fmt: skip
INT_DATATYPES: Final = frozenset(d for d in NUMERIC_DATATYPES if "INT" in d)


@dataclass(frozen=True)
class Prediction:
    """One model's answer for one feature row (the latest of the rows given)."""

    model_name: str
    model_version: str
    feature_set_version: int
    symbol: str | None
    ts: dt.datetime | None
    classes: tuple[str, ...]
    probabilities: tuple[float, ...] = ()  # classifiers
    score: float | None = None  # the anomaly model
    threshold: float | None = None

    @property
    def label(self) -> str | None:
        """The predicted class (the first on a tie), or None for the anomaly model."""
        if not self.classes:
            return None
        return self.classes[int(np.argmax(self.probabilities))]

    @property
    def is_anomaly(self) -> bool | None:
        if self.score is None or self.threshold is None:
            return None
        return self.score > self.threshold

    def to_response(self) -> ClassPrediction | AnomalyPrediction:
        common: dict[str, Any] = {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "feature_set_version": self.feature_set_version,
            "symbol": self.symbol,
            "ts": self.ts,
        }
        if self.classes:
            return ClassPrediction(
                **common,
                prediction=str(self.label),
                probabilities=dict(zip(self.classes, self.probabilities, strict=True)),
            )
        assert self.score is not None
        return AnomalyPrediction(
            **common, score=self.score, threshold=self.threshold, is_anomaly=self.is_anomaly
        )


def threshold_of(model: LoadedModel) -> float | None:
    """The anomaly model's alert threshold from its training record, if it has one."""
    v = model.bundle.meta.training.get("score_threshold")
    try:
        f = float(v) if v is not None else math.nan
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class DataPlane:
    """What the routes do, on a :class:`ModelRepository` and a feature store."""

    def __init__(
        self,
        repository: ModelRepository,
        store: Store | None = None,
        metrics: ServingMetrics | None = None,
        cache: SessionCache | None = None,
    ) -> None:
        self.repository = repository
        self.store = store
        self.metrics = metrics
        self.cache = cache  # set while a feed keeps it current (see the module docstring)

    # ---- health and metadata -----------------------------------------------------------------
    @staticmethod
    def live() -> bool:
        return True

    def ready(self) -> bool:
        return self.repository.is_ready()

    @staticmethod
    def server_metadata() -> ServerMetadataResponse:
        return ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=[])

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """404 for an unknown model or version; False while a served model is not loaded."""
        try:
            self.repository.get(name, version)
        except ModelNotReadyError:
            return False
        return True

    def model_metadata(self, name: str, version: str | None = None) -> ModelMetadataResponse:
        model = self.repository.get(name, version)
        meta = model.bundle.meta
        inputs = [MetadataTensor(name=c, datatype="FP64", shape=[-1]) for c in meta.feature_columns]
        inputs.append(MetadataTensor(name=FSV_INPUT, datatype="INT64", shape=[-1]))
        if meta.classes:
            outputs = [
                MetadataTensor(
                    name="probabilities", datatype="FP64", shape=[-1, len(meta.classes)]
                ),
                MetadataTensor(name="label", datatype="BYTES", shape=[-1]),
            ]
        else:
            outputs = [MetadataTensor(name="score", datatype="FP64", shape=[-1])]
            if threshold_of(model) is not None:
                outputs.append(MetadataTensor(name="is_anomaly", datatype="BOOL", shape=[-1]))
        params: dict[str, Any] = {
            "kind": meta.kind,
            "feature_set_version": meta.feature_set_version,
            "classes": list(meta.classes),
            "sequence_length": meta.sequence_length,
            "score_threshold": threshold_of(model),
            "optional_inputs": [FSV_INPUT],
            "run_id": meta.training.get("run_id"),
        }
        return ModelMetadataResponse(
            name=name,
            versions=[model.version],
            platform="onnxruntime_onnx",
            inputs=inputs,
            outputs=outputs,
            parameters=params,
        )

    # ---- OIP v2 inference ----------------------------------------------------------------------
    def infer(
        self, name: str, request: InferenceRequest, version: str | None = None
    ) -> InferenceResponse:
        model = self.repository.get(name, version)
        meta = model.bundle.meta
        x = self._tensor_rows(model, request.inputs)
        try:
            out = model.bundle.predict(x)
        except ValueError as err:
            raise InvalidInputError(f"{name}: {err}") from None
        threshold = threshold_of(model)
        outputs: dict[str, ResponseOutput] = {}
        n = len(x)
        if meta.classes:
            labels = [meta.classes[i] for i in np.argmax(out, axis=1)]
            outputs["probabilities"] = ResponseOutput(
                name="probabilities", shape=[n, len(meta.classes)], datatype="FP64",
                data=out.reshape(-1).tolist(),
            )  # fmt: skip
            outputs["label"] = ResponseOutput(
                name="label", shape=[n], datatype="BYTES", data=labels
            )
            if self.metrics is not None:
                self.metrics.observe_labels(name, labels)
        else:
            scores = out.reshape(-1).tolist()
            outputs["score"] = ResponseOutput(name="score", shape=[n], datatype="FP64", data=scores)
            if threshold is not None:
                flags = [s > threshold for s in scores]
                outputs["is_anomaly"] = ResponseOutput(
                    name="is_anomaly", shape=[n], datatype="BOOL", data=flags
                )
            self._observe_scores(name, scores, threshold)
        if request.outputs:
            wanted = [o.name for o in request.outputs]
            unknown = [w for w in wanted if w not in outputs]
            if unknown:
                raise InvalidInputError(
                    f"unknown output {', '.join(map(repr, unknown))} of model {name!r} "
                    f"(outputs: {', '.join(outputs)})"
                )
            chosen = [outputs[w] for w in dict.fromkeys(wanted)]
        else:
            chosen = list(outputs.values())
        return InferenceResponse(
            model_name=name, model_version=model.version, id=request.id, outputs=chosen
        )

    def _tensor_rows(self, model: LoadedModel, inputs: Sequence[RequestInput]) -> F8:
        """The request's named tensors → the ``(n, features)`` matrix in the bundle's order."""
        meta = model.bundle.meta
        columns = meta.feature_columns
        by_name: dict[str, RequestInput] = {}
        for t in inputs:
            if t.name in by_name:
                raise InvalidInputError(f"input {t.name!r} is given twice")
            by_name[t.name] = t
        unknown = [k for k in by_name if k not in columns and k != FSV_INPUT]
        if unknown:
            raise InvalidInputError(
                f"unknown input {', '.join(map(repr, unknown))} for model {meta.name!r} "
                f"(inputs: {', '.join(columns)}, optional {FSV_INPUT})"
            )
        missing = [c for c in columns if c not in by_name]
        if missing:
            raise InvalidInputError(
                f"missing features {', '.join(missing)} (model {meta.name!r} reads "
                f"{len(columns)} features of feature_set_version {meta.feature_set_version})"
            )
        cols = [_feature_tensor(by_name[c]) for c in columns]
        lengths = {len(c) for c in cols}
        if len(lengths) != 1:
            sizes = ", ".join(f"{c} {len(v)}" for c, v in zip(columns, cols, strict=True))
            raise InvalidInputError(f"inputs differ in length (one value per row): {sizes}")
        n = lengths.pop()
        if n == 0:
            raise InvalidInputError("inputs hold no rows: give at least one value per feature")
        if FSV_INPUT in by_name:
            _check_fsv_tensor(by_name[FSV_INPUT], meta.name, meta.feature_set_version, n)
        return np.column_stack(cols)

    # ---- /predict --------------------------------------------------------------------------------
    def predict(self, name: str, request: PredictRequest) -> ClassPrediction | AnomalyPrediction:
        model = self.repository.get(name)
        meta = model.bundle.meta
        if (
            request.feature_set_version is not None
            and request.feature_set_version != meta.feature_set_version
        ):
            raise InvalidInputError(_fsv_message(meta.name, request.feature_set_version,
                                                 meta.feature_set_version))  # fmt: skip
        if request.symbol is not None:
            rows, newest = self._symbol_rows(model, request.symbol, request.as_of)
            prediction = self.predict_rows(
                model, rows, symbol=request.symbol, ts=newest.to_pydatetime()
            )
        else:
            assert request.features is not None
            matrix = _feature_rows(request.features, meta.feature_columns)
            prediction = self.predict_rows(model, matrix, symbol=None, ts=request.ts)
        self.observe(prediction)
        return prediction.to_response()

    def predict_cached(
        self, name: str, request: PredictRequest
    ) -> ClassPrediction | AnomalyPrediction | None:
        """:meth:`predict` by symbol when the session cache can answer (newest rows, no
        ``as_of``): no I/O, so the router runs it on the event loop; None otherwise."""
        from signalstack.serving.cache import cacheable

        if self.cache is None or request.symbol is None or request.as_of is not None:
            return None
        model = self.repository.get(name)
        meta = model.bundle.meta
        if request.feature_set_version not in (None, meta.feature_set_version):
            return None  # predict() answers it with the error
        if not cacheable(model):
            return None
        got = self.cache.rows(request.symbol, meta.feature_set_version, meta.sequence_length or 1)
        if got is None:
            return None
        prediction = self.predict_rows(
            model, got[0], symbol=request.symbol, ts=got[1].to_pydatetime()
        )
        self.observe(prediction)
        return prediction.to_response()

    def _symbol_rows(
        self, model: LoadedModel, symbol: str, as_of: Any
    ) -> tuple[pd.DataFrame | F8, pd.Timestamp]:
        """The symbol's newest session rows at or before ``as_of`` and the newest one's time."""
        from signalstack.serving.cache import cacheable

        meta = model.bundle.meta
        limit = meta.sequence_length or 1
        fsv = meta.feature_set_version
        cache = self.cache if as_of is None and cacheable(model) else None
        if cache is not None:
            got = cache.rows(symbol, fsv, limit)
            if got is not None:
                return got
        if self.store is None:
            raise StoreUnavailableError("prediction by symbol needs a feature store (none here)")
        # never seeds the cache: a symbol this replica is not fed (another replica owns its
        # partition) would be answered from that copy forever; the feed's rows keep it current
        rows = self.store.session_features(symbol, limit, fsv, as_of)
        if rows.empty:
            when = f" at or before {as_of.isoformat()}" if as_of is not None else ""
            raise SymbolNotFoundError(
                f"no feature rows of feature_set_version {meta.feature_set_version} for symbol "
                f"{symbol!r}{when}"
            )
        return rows, pd.Timestamp(rows["ts"].iloc[-1])

    def predict_rows(
        self,
        model: LoadedModel,
        rows: pd.DataFrame | F8,
        *,
        symbol: str | None,
        ts: dt.datetime | None,
    ) -> Prediction:
        """The model's answer for the latest of one symbol's session rows (oldest first): the
        unit the live stream publishes and stores."""
        meta = model.bundle.meta
        # the last row is what is predicted, from at most the sequence it reads: transform
        # those rows only (a body of thousands of rows would otherwise all be transformed)
        keep = meta.sequence_length or 1
        rows = rows.iloc[-keep:] if isinstance(rows, pd.DataFrame) else rows[-keep:]
        try:
            out = model.bundle.predict_last(rows)
        except ValueError as err:
            raise InvalidInputError(f"{meta.name}: {err}") from None
        common: dict[str, Any] = {
            "model_name": meta.name,
            "model_version": model.version,
            "feature_set_version": meta.feature_set_version,
            "symbol": symbol,
            "ts": ts,
            "classes": tuple(meta.classes),
        }
        if meta.classes:
            return Prediction(**common, probabilities=tuple(float(p) for p in out[0]))
        return Prediction(**common, score=float(out[0]), threshold=threshold_of(model))

    # ---- metrics ---------------------------------------------------------------------------------
    def observe(self, p: Prediction) -> None:
        """Count the prediction (class counts, score distribution)."""
        if self.metrics is None:
            return
        if p.classes:
            self.metrics.observe_labels(p.model_name, [str(p.label)])
        elif p.score is not None:
            self._observe_scores(p.model_name, [p.score], p.threshold)

    def _observe_scores(self, name: str, scores: Sequence[float], threshold: float | None) -> None:
        if self.metrics is None:
            return
        self.metrics.observe_scores(name, scores)
        if threshold is not None:
            self.metrics.observe_labels(
                name, ["anomaly" if s > threshold else "normal" for s in scores]
            )


def _fsv_message(model: str, got: Any, want: int) -> str:
    return (
        f"features of feature_set_version {got} given to the {model} model, trained on "
        f"feature_set_version {want}: a model is only fed the feature set it was trained on"
    )


def _flatten(data: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, list):
                stack.append(iter(v))
                break
            out.append(v)
        else:
            stack.pop()
    return out


def _numeric_values(t: RequestInput, allow_null: bool) -> list[float]:
    """A tensor's data, checked against its shape and datatype, as floats (None → NaN)."""
    if any(d < 0 for d in t.shape):
        raise InvalidInputError(f"input {t.name!r}: shape {t.shape} has a negative dimension")
    values = _flatten(t.data)
    size = math.prod(t.shape)
    if len(values) != size:
        raise InvalidInputError(
            f"input {t.name!r}: shape {t.shape} holds {size} values; data has {len(values)}"
        )
    out: list[float] = []
    for i, v in enumerate(values):
        if v is None and allow_null:
            out.append(math.nan)
            continue
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InvalidInputError(
                f"input {t.name!r} ({t.datatype}): value {i} is {v!r}, not a number"
                + (" (null: undefined)" if allow_null else "")
            )
        try:
            f = float(v)
        except OverflowError:  # an integer too large for a float: a client error, not a 500
            raise InvalidInputError(
                f"input {t.name!r}: value {i} does not fit a 64-bit float"
            ) from None
        if not math.isfinite(f):
            raise InvalidInputError(
                f"input {t.name!r}: value {i} is {v!r}; values must be finite numbers "
                + ("(send null for a feature undefined at that time)" if allow_null else "")
            )
        out.append(f)
    return out


def _feature_tensor(t: RequestInput) -> F8:
    if t.datatype not in NUMERIC_DATATYPES:
        raise InvalidInputError(
            f"input {t.name!r} has datatype {t.datatype!r}; features are FP64 (or another "
            "numeric datatype)"
        )
    if len(t.shape) not in (1, 2) or (len(t.shape) == 2 and t.shape[1] != 1):
        raise InvalidInputError(
            f"input {t.name!r} has shape {t.shape}; a feature is one value per row: [n] or [n, 1]"
        )
    return np.asarray(_numeric_values(t, allow_null=True), dtype=np.float64)


def _check_fsv_tensor(t: RequestInput, model: str, want: int, n: int) -> None:
    if t.datatype not in INT_DATATYPES:
        raise InvalidInputError(f"input {FSV_INPUT!r} has datatype {t.datatype!r}; it is INT64")
    if len(t.shape) != 1 or t.shape[0] not in (1, n):
        raise InvalidInputError(f"input {FSV_INPUT!r} has shape {t.shape}; expected [1] or [{n}]")
    values = _numeric_values(t, allow_null=False)
    wrong = sorted({int(v) if v == int(v) else v for v in values if v != want})
    if wrong:
        raise InvalidInputError(_fsv_message(model, ", ".join(map(str, wrong)), want))


def _feature_rows(
    features: Mapping[str, float | None] | Sequence[Mapping[str, float | None]],
    columns: Sequence[str],
) -> F8:
    rows = [features] if isinstance(features, Mapping) else list(features)
    out = np.empty((len(rows), len(columns)), dtype=np.float64)
    known = set(columns)
    for i, row in enumerate(rows):
        where = f"features[{i}]" if len(rows) > 1 else "features"
        unknown = sorted(set(row) - known)
        if unknown:
            raise InvalidInputError(
                f"{where}: unknown features {', '.join(unknown)} (the model reads "
                f"{', '.join(columns)})"
            )
        missing = [c for c in columns if c not in row]
        if missing:
            raise InvalidInputError(f"{where}: missing features {', '.join(missing)}")
        for j, c in enumerate(columns):
            v = row[c]
            if v is None:
                out[i, j] = math.nan
            elif not math.isfinite(v):
                raise InvalidInputError(
                    f"{where}: {c} is {v}; values must be finite numbers (null: undefined at "
                    "that time)"
                )
            else:
                out[i, j] = v
    return out


__all__ = ["FSV_INPUT", "DataPlane", "Prediction", "threshold_of"]
