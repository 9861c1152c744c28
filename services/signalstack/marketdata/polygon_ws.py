"""Polygon WebSocket client (``websockets``): connect, auth, subscribe, read frames into a queue.

The client only *reads*: every data frame goes, unparsed, into a bounded ``asyncio.Queue`` so a
slow parser never stalls the socket (Polygon kills slow readers); the consumer parses and
dispatches on ``ev``. Around each connection it puts a :class:`Connected` marker in the queue
*before* any frame of that connection; the marker's ``subscribed`` event fires once the server
has acknowledged every subscription, which is when a consumer may fetch the gap from REST (the
new stream has started, so REST up to "now" overlaps it and nothing falls in between).

Failure handling:
- ``auth_failed`` → :class:`PolygonAuthError`, raised out of :meth:`run` (fatal, clear message).
- ``max_connections`` (status or close code 1008) → a long backoff (minutes by default).
- any other disconnect → exponential backoff with full jitter, reset after a healthy connection.
- keepalive: a ping every ``ping_interval`` s; no pong within ``ping_timeout`` s drops the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from signalstack.logs import get_logger
from signalstack.marketdata.errors import (
    PolygonAuthError,
    PolygonMaxConnectionsError,
    PolygonProtocolError,
)

log = get_logger(__name__)

CLOSE_POLICY_VIOLATION = 1008


@dataclass
class Connected:
    """Queue marker: a (re)connection authenticated; frames after it belong to it."""

    number: int  # 1 for the first connection
    at_ns: int  # wall clock when authenticated
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    ok: bool = False  # set before ``subscribed`` fires: False if the link died first


class WsObserver(Protocol):
    def on_reconnect(self) -> None: ...
    def on_backoff(self, seconds: float, max_connections: bool) -> None: ...
    def on_connected(self, connected: bool) -> None: ...


class _NullObserver:
    def on_reconnect(self) -> None:
        pass

    def on_backoff(self, seconds: float, max_connections: bool) -> None:
        pass

    def on_connected(self, connected: bool) -> None:
        pass


def _statuses(frame: str | bytes) -> list[dict[str, Any]]:
    try:
        events = orjson.loads(frame)
    except orjson.JSONDecodeError as err:
        raise PolygonProtocolError(f"non-JSON frame during handshake: {frame[:120]!r}") from err
    if not isinstance(events, list):
        raise PolygonProtocolError(f"frame is not a JSON array: {frame[:120]!r}")
    return [e for e in events if isinstance(e, dict) and e.get("ev") == "status"]


class PolygonWebSocketClient:
    def __init__(
        self,
        url: str,
        api_key: str,
        params: Sequence[str],
        queue: asyncio.Queue[Any],
        *,
        observer: WsObserver | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_connections_backoff: tuple[float, float] = (60.0, 180.0),
        healthy_after_s: float = 5.0,
        ping_interval: float | None = 25.0,
        ping_timeout: float | None = 5.0,
        handshake_timeout: float = 10.0,
        max_attempts: int | None = None,
        seed: int | None = None,
    ) -> None:
        if not params:
            raise ValueError("nothing to subscribe to")
        self.url = url
        self._key = api_key
        self.params = list(params)
        self.queue = queue
        self.observer: WsObserver = observer or _NullObserver()
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_connections_backoff = max_connections_backoff
        self.healthy_after_s = healthy_after_s
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.handshake_timeout = handshake_timeout
        self.max_attempts = max_attempts
        self._rng = random.Random(seed)  # noqa: S311 - jitter, not crypto
        self.connections = 0
        self.frames = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Connect and read until ``stop`` is set; raise :class:`PolygonAuthError` if refused."""
        attempt = 0
        failures = 0
        while not stop.is_set():
            started = time.monotonic()
            max_conn = False
            try:
                await self._session(stop)
            except PolygonAuthError:
                self.observer.on_connected(False)
                raise
            except PolygonMaxConnectionsError as err:
                max_conn = True
                log.warning("polygon_ws_max_connections", message=str(err))
            except (
                OSError,
                ConnectionClosed,
                InvalidHandshake,
                PolygonProtocolError,
                TimeoutError,
            ) as err:
                log.warning("polygon_ws_disconnected", error=repr(err)[:300])
            except InvalidURI:
                raise
            self.observer.on_connected(False)
            if stop.is_set():
                return
            failures += 1
            if self.max_attempts is not None and failures >= self.max_attempts:
                raise PolygonProtocolError(
                    f"gave up after {failures} failed connections to {self.url}"
                )
            if time.monotonic() - started >= self.healthy_after_s:
                attempt = 0
            if max_conn:
                lo, hi = self.max_connections_backoff
                delay = self._rng.uniform(lo, hi)
            else:
                delay = self._rng.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt))
                attempt += 1
            self.observer.on_backoff(delay, max_conn)
            self.observer.on_reconnect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    async def _session(self, stop: asyncio.Event) -> None:
        async with connect(
            self.url,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            max_size=None,
            max_queue=64,
            open_timeout=self.handshake_timeout,
            close_timeout=2.0,  # a server still pushing data must not hold a shutdown for long
            compression=None,
        ) as ws:
            marker = await self._handshake(ws)
            try:
                await self._read(ws, marker, stop)
            except ConnectionClosed as err:
                rcvd = err.rcvd
                if rcvd is not None and rcvd.code == CLOSE_POLICY_VIOLATION:
                    raise PolygonMaxConnectionsError(rcvd.reason or "closed with 1008") from err
                raise
            finally:
                if not marker.subscribed.is_set():
                    marker.subscribed.set()

    async def _recv_statuses(self, ws: ClientConnection) -> list[dict[str, Any]]:
        frame = await asyncio.wait_for(ws.recv(), timeout=self.handshake_timeout)
        return _statuses(frame)

    def _check(self, st: dict[str, Any]) -> None:
        status = st.get("status")
        if status == "auth_failed" or (
            status == "error" and "auth" in str(st.get("message", "")).lower()
        ):
            raise PolygonAuthError(
                f"Polygon refused the API key ({status}: {st.get('message', '')}); "
                "check POLYGON_API_KEY "
                "and that the plan includes WebSocket access"
            )
        if status == "max_connections":
            raise PolygonMaxConnectionsError(str(st.get("message", "max_connections")))

    async def _handshake(self, ws: ClientConnection) -> Connected:
        try:
            first = await self._recv_statuses(ws)
            for st in first:
                self._check(st)
            if not any(st.get("status") == "connected" for st in first):
                raise PolygonProtocolError(f"expected status 'connected', got {first!r}")
            await ws.send(orjson.dumps({"action": "auth", "params": self._key}).decode())
            while True:
                sts = await self._recv_statuses(ws)
                for st in sts:
                    self._check(st)
                if any(st.get("status") == "auth_success" for st in sts):
                    break
        except ConnectionClosed as err:
            rcvd = err.rcvd
            if rcvd is not None and rcvd.code == CLOSE_POLICY_VIOLATION:
                raise PolygonMaxConnectionsError(rcvd.reason or "closed with 1008") from err
            raise
        self.connections += 1
        marker = Connected(number=self.connections, at_ns=time.time_ns())
        await self.queue.put(marker)
        await ws.send(
            orjson.dumps({"action": "subscribe", "params": ",".join(self.params)}).decode()
        )
        log.info("polygon_ws_authenticated", connection=self.connections, url=self.url)
        return marker

    async def _read(self, ws: ClientConnection, marker: Connected, stop: asyncio.Event) -> None:
        pending = set(self.params)
        q = self.queue
        stop_task: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                # bytes, not str: orjson parses bytes, and UTF-8 decoding is left to it
                recv: asyncio.Future[Any] = asyncio.ensure_future(ws.recv(decode=False))
                done, _ = await asyncio.wait({recv, stop_task}, return_when=asyncio.FIRST_COMPLETED)
                if stop_task in done:
                    recv.cancel()
                    await ws.close()
                    return
                frame = recv.result()
                self.frames += 1
                if pending and b'"status"' in (
                    frame if isinstance(frame, bytes) else frame.encode()
                ):
                    for st in _statuses_lenient(frame):
                        self._check(st)
                        msg = str(st.get("message", ""))
                        if st.get("status") == "success" and msg.startswith("subscribed to:"):
                            for p in msg.split(":", 1)[1].split(","):
                                pending.discard(p.strip())
                    if not pending:
                        marker.ok = True
                        marker.subscribed.set()
                        self.observer.on_connected(True)
                        log.info("polygon_ws_subscribed", params=len(self.params))
                if not q.full():
                    q.put_nowait(frame)
                    continue
                # Back-pressure: wait for the parser, but never past a stop request.
                put: asyncio.Future[Any] = asyncio.ensure_future(q.put(frame))
                done, _ = await asyncio.wait({put, stop_task}, return_when=asyncio.FIRST_COMPLETED)
                if put not in done:
                    put.cancel()
                    await ws.close()
                    return
        finally:
            stop_task.cancel()


def _statuses_lenient(frame: str | bytes) -> list[dict[str, Any]]:
    try:
        return _statuses(frame)
    except PolygonProtocolError:
        return []


__all__ = ["Connected", "PolygonWebSocketClient", "WsObserver", "websockets"]
