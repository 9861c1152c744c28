"""One exception tree for the inference API and one map from it to HTTP statuses.

Every error a client can cause is a :class:`ServingError` whose message names what is wrong;
:func:`install_error_handlers` turns it, FastAPI's request validation errors and Starlette's
routing errors into one JSON body, ``{"error": "<message>"}`` (the Open Inference Protocol's
error body, used on every route). Statuses:

- unknown model, model version or symbol: 404;
- a request that does not fit (wrong shape or datatype, NaN or inf, missing or unknown
  features, features of another feature_set_version): 422 on ``/predict/*``, 400 on ``/v2``
  (the OIP REST spec answers a failed inference request with 400);
- malformed JSON: 400; a body over ``SERVING_MAX_BODY_BYTES``: 413; a missing or wrong bearer
  token: 401; a model not loaded yet: 503 (readiness, not bad input).
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from signalstack.errors import SignalStackError
from signalstack.logs import get_logger

log = get_logger(__name__)

OIP_PREFIX: Final = "/v2"


class ErrorResponse(BaseModel):
    """The body of every error response: what is wrong, in words."""

    error: str


class ServingError(SignalStackError):
    """Root of the inference API's errors; ``http_status`` is the response status."""

    http_status = 400


class InvalidInputError(ServingError):
    """The request does not fit the model: shape, datatype, values, features, feature set."""

    http_status = 422


class MalformedRequestError(ServingError):
    """The body is not JSON, or not the JSON the route takes."""

    http_status = 400


class ModelNotFoundError(ServingError):
    """No such model, or not that version of it."""

    http_status = 404


class SymbolNotFoundError(ServingError):
    """No feature rows for the symbol (of the model's feature set, at or before ``as_of``)."""

    http_status = 404


class ModelNotReadyError(ServingError):
    """The model is served here but not loaded (yet)."""

    http_status = 503


class UnauthorizedError(ServingError):
    """A bearer token is required and the request's is missing or wrong."""

    http_status = 401


class PayloadTooLargeError(ServingError):
    """The request body is larger than ``SERVING_MAX_BODY_BYTES``."""

    http_status = 413


class StoreUnavailableError(ServingError):
    """Prediction by symbol needs the feature store, and none is configured or reachable."""

    http_status = 503


#: documented on every route (``responses=``), so the OpenAPI schema matches what is sent
ERROR_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    status: {"model": ErrorResponse, "description": what}
    for status, what in (
        (400, "Malformed request (or, on /v2, a request that does not fit the model)"),
        (401, "Bearer token missing or wrong"),
        (404, "Unknown model, version or symbol"),
        (413, "Request body too large"),
        (422, "The request does not fit the model"),
        (503, "Model not loaded yet"),
    )
}


def _status_for(path: str, status: int) -> int:
    # OIP v2: a request that does not fit the model is a failed inference request, 400
    return 400 if status == 422 and path.startswith(OIP_PREFIX) else status


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _where(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def validation_message(errors: list[dict[str, Any]]) -> tuple[bool, str]:
    """FastAPI's validation errors → (malformed JSON?, one line naming each problem)."""
    if any(e.get("type") == "json_invalid" for e in errors):
        e = next(e for e in errors if e.get("type") == "json_invalid")
        ctx = e.get("ctx") or {}
        return True, f"malformed JSON: {ctx.get('error', e.get('msg', 'cannot be parsed'))}"
    parts = [
        f"{_where(tuple(e.get('loc', ())))}: "
        + str(e.get("msg", "invalid")).removeprefix("Value error, ")
        for e in errors[:10]
    ]
    more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
    return False, "invalid request: " + "; ".join(parts) + more


def install_error_handlers(app: FastAPI) -> None:
    """Register the one error → status map on ``app``."""

    async def on_serving_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServingError)
        status = _status_for(request.url.path, exc.http_status)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return error_response(status, str(exc), headers)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        malformed, message = validation_message(list(exc.errors()))
        status = 400 if malformed else _status_for(request.url.path, 422)
        return error_response(status, message)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        return error_response(exc.status_code, message, getattr(exc, "headers", None))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("serving.unexpected_error", path=request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log")

    app.add_exception_handler(ServingError, on_serving_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


__all__ = [
    "ERROR_RESPONSES",
    "ErrorResponse",
    "InvalidInputError",
    "MalformedRequestError",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "PayloadTooLargeError",
    "ServingError",
    "StoreUnavailableError",
    "SymbolNotFoundError",
    "UnauthorizedError",
    "install_error_handlers",
]
