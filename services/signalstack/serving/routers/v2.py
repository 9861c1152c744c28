"""Open Inference Protocol (V2) REST routes, as KServe and Triton serve them, so standard OIP
v2 clients (e.g. ``tritonclient.http``) work unchanged. JSON tensors only: the binary tensor
data extension is refused with a 400 that says so."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from signalstack.serving.dataplane import DataPlane
from signalstack.serving.dependencies import DataPlaneDep
from signalstack.serving.errors import ERROR_RESPONSES, MalformedRequestError
from signalstack.serving.schemas import (
    InferenceRequest,
    InferenceResponse,
    LiveResponse,
    ModelMetadataResponse,
    ModelReadyResponse,
    ReadyResponse,
    ServerMetadataResponse,
)

BINARY_HEADER = "inference-header-content-length"


class JsonBodyRoute(APIRoute):
    """Reads the body as JSON whatever its Content-Type, as Triton and KServe do: OIP clients
    (``tritonclient.http``) send the JSON request without ``application/json``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            if "json" not in request.headers.get("content-type", ""):
                scope = dict(request.scope)
                scope["headers"] = [
                    *((k, v) for k, v in scope["headers"] if k != b"content-type"),
                    (b"content-type", b"application/json"),
                ]
                request = Request(scope, request.receive)
            return await handler(request)

        return route


#: the probes: open even when a bearer token is required
health_router = APIRouter(prefix="/v2", tags=["Open Inference Protocol v2"])
router = APIRouter(
    prefix="/v2",
    tags=["Open Inference Protocol v2"],
    responses=ERROR_RESPONSES,
    route_class=JsonBodyRoute,
)


@health_router.get("/health/live", response_model=LiveResponse)
async def live(dataplane: DataPlaneDep) -> LiveResponse:
    """Liveness: the server answers."""
    return LiveResponse(live=dataplane.live())


@health_router.get(
    "/health/ready",
    response_model=ReadyResponse,
    responses={503: {"model": ReadyResponse, "description": "Models not loaded yet"}},
)
async def ready(dataplane: DataPlaneDep, response: Response) -> ReadyResponse:
    """Readiness: 200 once every model the source has is loaded, 503 before."""
    ok = dataplane.ready()
    if not ok:
        response.status_code = 503
    return ReadyResponse(ready=ok)


@router.get("", response_model=ServerMetadataResponse)
async def server_metadata(dataplane: DataPlaneDep) -> ServerMetadataResponse:
    """Server metadata: name, version, protocol extensions."""
    return dataplane.server_metadata()


def _ready(dataplane: DataPlaneDep, name: str, version: str | None, response: Response) -> Any:
    ok = dataplane.model_ready(name, version)
    if not ok:
        response.status_code = 503
    return ModelReadyResponse(name=name, ready=ok)


_NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"model": ModelReadyResponse, "description": "Not loaded yet"}
}


@router.get("/models/{model_name}/ready", response_model=ModelReadyResponse, responses=_NOT_READY)
async def model_ready(
    model_name: str, dataplane: DataPlaneDep, response: Response
) -> ModelReadyResponse:
    """Model readiness: 200 when loaded, 503 while loading, 404 for an unknown model."""
    out: ModelReadyResponse = _ready(dataplane, model_name, None, response)
    return out


@router.get(
    "/models/{model_name}/versions/{model_version}/ready",
    response_model=ModelReadyResponse,
    responses=_NOT_READY,
)
async def model_version_ready(
    model_name: str, model_version: str, dataplane: DataPlaneDep, response: Response
) -> ModelReadyResponse:
    """Readiness of one version (404 when another version is served)."""
    out: ModelReadyResponse = _ready(dataplane, model_name, model_version, response)
    return out


@router.get("/models/{model_name}", response_model=ModelMetadataResponse,
            response_model_exclude_none=True)  # fmt: skip
async def model_metadata(model_name: str, dataplane: DataPlaneDep) -> ModelMetadataResponse:
    """The model's version, platform, input and output tensors."""
    return dataplane.model_metadata(model_name)


@router.get("/models/{model_name}/versions/{model_version}", response_model=ModelMetadataResponse,
            response_model_exclude_none=True)  # fmt: skip
async def model_version_metadata(
    model_name: str, model_version: str, dataplane: DataPlaneDep
) -> ModelMetadataResponse:
    return dataplane.model_metadata(model_name, model_version)


def _check_json_only(request: Request) -> None:
    if BINARY_HEADER in request.headers:
        raise MalformedRequestError(
            "the binary tensor data extension is not supported: send the tensors as JSON "
            "(tritonclient: binary_data=False)"
        )


@router.post("/models/{model_name}/infer", response_model=InferenceResponse,
             response_model_exclude_none=True)  # fmt: skip
async def infer(
    model_name: str, body: InferenceRequest, dataplane: DataPlaneDep, request: Request
) -> InferenceResponse:
    """Inference on named tensors (see the model's metadata for its inputs and outputs)."""
    _check_json_only(request)
    return await _infer(dataplane, model_name, body, None)


@router.post("/models/{model_name}/versions/{model_version}/infer",
             response_model=InferenceResponse, response_model_exclude_none=True)  # fmt: skip
async def infer_version(
    model_name: str,
    model_version: str,
    body: InferenceRequest,
    dataplane: DataPlaneDep,
    request: Request,
) -> InferenceResponse:
    _check_json_only(request)
    return await _infer(dataplane, model_name, body, model_version)


# a request of a few rows runs on the event loop (~0.1 ms: a thread hop costs more); a large
# batch goes to the thread pool so it never holds up the other requests
INLINE_ROWS = 64


async def _infer(
    dataplane: DataPlane, name: str, body: InferenceRequest, version: str | None
) -> InferenceResponse:
    rows = max((t.shape[0] for t in body.inputs if t.shape), default=0)
    if rows > INLINE_ROWS:
        return await run_in_threadpool(dataplane.infer, name, body, version)
    return dataplane.infer(name, body, version)
