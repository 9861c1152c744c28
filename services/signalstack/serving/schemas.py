"""Request and response bodies of the inference API (pydantic: validation and OpenAPI).

The ``/v2`` models follow the Open Inference Protocol (V2) REST spec (KServe's "predict
protocol v2"): named tensors with a datatype and a shape, data flattened row-major (nested
lists are accepted too). ``/predict/*`` is this project's own, smaller shape.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

SYMBOL_PATTERN: Final = r"^[A-Z][A-Z0-9.\-]{0,15}$"
MAX_ROWS: Final = 10_000


# ---- Open Inference Protocol v2 -------------------------------------------------------------
class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(BaseModel):
    ready: bool


class ModelReadyResponse(BaseModel):
    name: str
    ready: bool


class ServerMetadataResponse(BaseModel):
    name: str
    version: str
    extensions: list[str]


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadataResponse(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    parameters: dict[str, Any] | None = None


class RequestInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any]


class RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any]


class InferenceResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


# ---- /predict/* -----------------------------------------------------------------------------
FeatureRow = dict[str, float | None]


class PredictRequest(BaseModel):
    """Either ``symbol`` (the store's latest rows, point in time) or explicit ``features``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"symbol": "AAPL"},
                {"symbol": "AAPL", "as_of": "2025-11-20T15:00:00Z"},
            ]
        },
    )

    symbol: str | None = Field(
        default=None,
        pattern=SYMBOL_PATTERN,
        description="Predict the symbol's latest feature row from the store.",
    )
    as_of: AwareDatetime | None = Field(
        default=None,
        description="With symbol: read rows stamped at or before this time (default: the newest).",
    )
    features: FeatureRow | list[FeatureRow] | None = Field(
        default=None,
        description=(
            "Explicit feature rows (feature name → value; null = undefined at that time, as "
            "the store's NULL): one row, or one symbol's session rows oldest first (the "
            "direction LSTM reads the last sequence_length of them, the others the last row)."
        ),
    )
    feature_set_version: int | None = Field(
        default=None, description="The features' feature set; must be the model's (default)."
    )
    ts: AwareDatetime | None = Field(
        default=None, description="With features: their timestamp, echoed in the response."
    )

    @model_validator(mode="after")
    def _one_source(self) -> PredictRequest:
        if (self.symbol is None) == (self.features is None):
            raise ValueError("give either symbol or features (exactly one)")
        if self.symbol is not None and self.ts is not None:
            raise ValueError("ts goes with features; with symbol the row's own ts is used")
        if self.features is not None and self.as_of is not None:
            raise ValueError("as_of goes with symbol; explicit features are used as given")
        if isinstance(self.features, list) and not 1 <= len(self.features) <= MAX_ROWS:
            raise ValueError(f"features: give 1 to {MAX_ROWS} rows")
        return self


class _PredictionBase(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    model_version: str
    feature_set_version: int
    symbol: str | None
    ts: dt.datetime | None = Field(description="The timestamp of the feature row predicted.")


class ClassPrediction(_PredictionBase):
    prediction: str = Field(description="The most probable class.")
    probabilities: dict[str, float]


class AnomalyPrediction(_PredictionBase):
    score: float = Field(description="Higher = more anomalous.")
    threshold: float | None = Field(description="The model's alert threshold (training).")
    is_anomaly: bool | None = Field(description="score > threshold (null without a threshold).")


# ---- /health ----------------------------------------------------------------------------------
class HealthResponse(BaseModel):
    status: str
    ready: bool
    source: str
    models: dict[str, dict[str, Any]]
    errors: dict[str, str]
