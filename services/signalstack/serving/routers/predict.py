"""``POST /predict/direction | /predict/regime | /predict/anomaly``: one prediction, for a
symbol's latest feature row in the store (point in time) or for explicit features."""

from __future__ import annotations

from fastapi import APIRouter

from signalstack.serving.dependencies import DataPlaneDep
from signalstack.serving.errors import ERROR_RESPONSES
from signalstack.serving.schemas import AnomalyPrediction, ClassPrediction, PredictRequest

router = APIRouter(prefix="/predict", tags=["predict"], responses=ERROR_RESPONSES)


@router.post("/regime", response_model=ClassPrediction)
def predict_regime(body: PredictRequest, dataplane: DataPlaneDep) -> ClassPrediction:
    """The regime (XGBoost): calm / trending / volatile over the next 30 minutes."""
    out = dataplane.predict("regime", body)
    assert isinstance(out, ClassPrediction)
    return out


@router.post("/direction", response_model=ClassPrediction)
def predict_direction(body: PredictRequest, dataplane: DataPlaneDep) -> ClassPrediction:
    """The direction (LSTM over the session's last rows): down / flat / up."""
    out = dataplane.predict("direction", body)
    assert isinstance(out, ClassPrediction)
    return out


@router.post("/anomaly", response_model=AnomalyPrediction)
def predict_anomaly(body: PredictRequest, dataplane: DataPlaneDep) -> AnomalyPrediction:
    """The anomaly score (Isolation Forest) and whether it crosses the model's threshold."""
    out = dataplane.predict("anomaly", body)
    assert isinstance(out, AnomalyPrediction)
    return out
