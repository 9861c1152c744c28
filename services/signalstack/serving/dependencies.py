"""FastAPI dependencies shared by the routers: the app's data plane and metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from signalstack.serving.dataplane import DataPlane
from signalstack.serving.metrics import ServingMetrics


# async: FastAPI runs a plain-function dependency in its thread pool, a hop per request
async def get_dataplane(request: Request) -> DataPlane:
    dataplane: DataPlane = request.app.state.dataplane
    return dataplane


async def get_metrics(request: Request) -> ServingMetrics:
    metrics: ServingMetrics = request.app.state.metrics
    return metrics


DataPlaneDep = Annotated[DataPlane, Depends(get_dataplane)]
MetricsDep = Annotated[ServingMetrics, Depends(get_metrics)]
