"""``WS /ws/predictions``: live predictions for the symbols and models a client subscribes to.

Subscribe with query parameters (``/ws/predictions?symbols=AAPL,MSFT&models=regime,anomaly``)
or, without them, with a first message ``{"symbols": ["AAPL"], "models": ["regime"]}`` (within
``SERVING_WS_SUBSCRIBE_TIMEOUT_S``). ``symbols``: tickers, or ``["*"]`` for every symbol;
``models``: some of the served models (default: all). The server answers
``{"subscribed": {"symbols": [...], "models": [...], "feed": "..."}}`` and then sends each
prediction as it is made: the ``market.predictions`` value (schemas/json/prediction.v1.json).

A bad subscription gets ``{"error": "<what is wrong>"}`` and the close code
:data:`~signalstack.serving.live.CLOSE_BAD_SUBSCRIPTION` (4400); no subscription in time 4408;
a missing or wrong bearer token (when ``SERVING_API_TOKEN`` is set) 4401. A client whose queue
(``SERVING_WS_QUEUE_SIZE`` messages) is full — it stopped reading — is closed with 4429 and
never holds the others back.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from typing import Any, Final

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import SecretStr

from signalstack.logs import get_logger
from signalstack.serving.auth import token_matches
from signalstack.serving.hub import (
    CLOSE_BAD_SUBSCRIPTION,
    CLOSE_SUBSCRIBE_TIMEOUT,
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHORIZED,
    Hub,
    Subscriber,
    Subscription,
)

log = get_logger(__name__)

router = APIRouter(tags=["live"])

SYMBOL_RE: Final = re.compile(r"^[A-Z][A-Z0-9.\-]{0,14}$")
MAX_SYMBOLS: Final = 500
#: how long a dropped client's close frame may wait behind the data it did not read
CLOSE_WAIT_S: Final = 10.0


@dataclass(frozen=True)
class LiveConfig:
    """What the route needs from the app (``app.state.live``)."""

    hub: Hub
    models: tuple[str, ...]
    feed: str  # the feed's description ("none" when no feed runs)
    queue_size: int
    subscribe_timeout_s: float
    token: SecretStr | None = None


class SubscriptionError(ValueError):
    """A subscription the server cannot take (the message says why)."""


def _names(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SubscriptionError(f"{what} must be a list of strings (or comma-separated)")
    return value


def parse_subscription(obj: Any, served: tuple[str, ...]) -> Subscription:
    """``{"symbols": [...], "models": [...]}`` → a :class:`Subscription`, or an error naming
    what is wrong."""
    if not isinstance(obj, dict):
        raise SubscriptionError(
            'a subscription is a JSON object: {"symbols": ["AAPL"], "models": ["regime"]}'
        )
    unknown = sorted(set(obj) - {"symbols", "models"})
    if unknown:
        raise SubscriptionError(f"unknown fields {', '.join(unknown)} (fields: symbols, models)")
    if "symbols" not in obj:
        raise SubscriptionError('symbols is required: a list of tickers, or ["*"] for all')
    symbols = _names(obj["symbols"], "symbols")
    if not symbols:
        raise SubscriptionError('symbols is empty: give at least one ticker, or ["*"] for all')
    if len(symbols) > MAX_SYMBOLS:
        raise SubscriptionError(f"{len(symbols)} symbols; at most {MAX_SYMBOLS} per client")
    wanted: frozenset[str] | None
    if symbols == ["*"]:
        wanted = None
    else:
        bad = [s for s in symbols if not SYMBOL_RE.match(s)]
        if bad:
            raise SubscriptionError(
                f"not a ticker: {', '.join(map(repr, bad[:5]))} (upper-case letters, digits, "
                "'.' or '-', at most 15 characters; or \"*\" alone for every symbol)"
            )
        wanted = frozenset(symbols)
    models = _names(obj.get("models", list(served)), "models")
    if not models:
        raise SubscriptionError(f"models is empty (served here: {', '.join(served)})")
    unknown_models = [m for m in models if m not in served]
    if unknown_models:
        raise SubscriptionError(
            f"unknown model {', '.join(map(repr, unknown_models))} (served here: "
            f"{', '.join(served)})"
        )
    return Subscription(wanted, frozenset(models))


async def _refuse(websocket: WebSocket, code: int, message: str) -> None:
    try:
        await websocket.send_text(orjson.dumps({"error": message}).decode())
        reason = message.encode()[:120].decode(errors="ignore")  # a close reason: ≤ 123 bytes
        await websocket.close(code, reason)
    except (WebSocketDisconnect, RuntimeError):  # the client left first
        pass


def _authorized(websocket: WebSocket, token: SecretStr | None) -> bool:
    expected = token.get_secret_value() if token is not None else ""
    if not expected:
        return True
    scheme, _, given = websocket.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and token_matches(expected, given.strip())


async def _first_message(websocket: WebSocket, timeout_s: float) -> Any:
    message = await asyncio.wait_for(websocket.receive(), timeout_s)
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    raw = message.get("text")
    if raw is None:
        raw = message.get("bytes") or b""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise SubscriptionError(f"the subscription is not JSON: {err}") from None


async def _send_loop(websocket: WebSocket, subscriber: Subscriber) -> None:
    while True:
        value = await subscriber.queue.get()
        await websocket.send_text(value.decode())


async def _receive_loop(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends after subscribing, until it leaves."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


@router.websocket("/ws/predictions")
async def ws_predictions(websocket: WebSocket) -> None:
    """Live predictions (see the module docstring)."""
    live: LiveConfig = websocket.app.state.live
    await websocket.accept()
    if not _authorized(websocket, live.token):
        await _refuse(websocket, CLOSE_UNAUTHORIZED, "needs Authorization: Bearer <token>")
        return
    query = websocket.query_params
    try:
        if "symbols" in query or "models" in query:
            extra = sorted(set(query) - {"symbols", "models"})
            if extra:
                raise SubscriptionError(
                    f"unknown query parameters {', '.join(extra)} (symbols, models)"
                )
            obj: dict[str, Any] = {}
            if "symbols" in query:
                obj["symbols"] = ",".join(query.getlist("symbols"))
            if "models" in query:
                obj["models"] = ",".join(query.getlist("models"))
        else:
            obj = await _first_message(websocket, live.subscribe_timeout_s)
        subscription = parse_subscription(obj, live.models)
    except SubscriptionError as err:
        await _refuse(websocket, CLOSE_BAD_SUBSCRIPTION, str(err))
        return
    except TimeoutError:
        await _refuse(websocket, CLOSE_SUBSCRIBE_TIMEOUT,
                      f"no subscription within {live.subscribe_timeout_s:g} s")  # fmt: skip
        return
    except WebSocketDisconnect:
        return

    subscriber = Subscriber(subscription, live.queue_size)
    live.hub.add(subscriber)
    tasks: list[asyncio.Task[Any]] = []
    try:
        symbols = ["*"] if subscription.symbols is None else sorted(subscription.symbols)
        ack = {"symbols": symbols, "models": sorted(subscription.models), "feed": live.feed}
        await websocket.send_text(orjson.dumps({"subscribed": ack}).decode())
        tasks = [
            asyncio.create_task(_send_loop(websocket, subscriber)),
            asyncio.create_task(_receive_loop(websocket)),
            asyncio.create_task(subscriber.dropped.wait()),
        ]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        if tasks[2] in done:  # it stopped reading: close it, waiting a bounded time
            log.warning("serving.ws_client_dropped", client=str(websocket.client),
                        queue=live.queue_size)  # fmt: skip
            # the close frame waits behind what the socket holds: bounded, then the
            # connection ends with the handler (the client reads the code if it reads on)
            with contextlib.suppress(TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
                await asyncio.wait_for(
                    websocket.close(CLOSE_TOO_SLOW, "too slow: stopped reading predictions"),
                    CLOSE_WAIT_S,
                )
        elif tasks[0] in done:
            failure = tasks[0].exception()
            if failure is not None and not isinstance(failure, WebSocketDisconnect | OSError):
                raise failure
    except WebSocketDisconnect:
        pass
    finally:
        for t in tasks:
            t.cancel()
        live.hub.remove(subscriber)


__all__ = ["LiveConfig", "SubscriptionError", "parse_subscription", "router"]
