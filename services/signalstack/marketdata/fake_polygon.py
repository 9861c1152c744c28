"""A fake Polygon stocks server: WebSocket and REST on one loopback port, one process.

It speaks the documented protocol (POLYGON.md): ``connected`` on open, ``auth`` →
``auth_success``/``auth_failed``, ``subscribe`` → one ``success`` status per topic, frames that
are JSON arrays of ``T`` events with millisecond ``t``; REST ``/v3/trades/{T}`` (ns timestamps,
``timestamp.gte/gt/lte/lt``, ``order`` defaulting to desc, ``limit`` ≤ 50000, ``next_url`` with
a cursor and no key), ``/v2/aggs``, ``/v3/reference/conditions`` and ``/v1/marketstatus/now``;
401 without a key. Non-upgrade HTTP requests on the WebSocket port are answered as REST.

The market is a tape (the simulator or a recorded file) published at ``rate`` trades/s once the
first client subscribes, whether or not anybody is connected afterwards: a client that drops
misses trades, exactly as on the real feed. Every published trade is also served by REST, so a
client can fill its gap. ``restamp`` (the live mode) stamps trades with the wall clock at
publication, keeping each print's reporting delay.

Fault knobs (:class:`FakeConfig`): drop each connection after N data frames (abort, data in
flight lost), inject malformed/invalid frames every N frames (one class after another), refuse
auth, answer ``max_connections`` to the first K logins (and enforce the connection limit),
throttle (``rate``), 429 or 503 every Nth REST request with ``Retry-After``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import numpy as np
import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from signalstack.logs import get_logger
from signalstack.marketdata.conditions import bundled_conditions_response
from signalstack.marketdata.simulator import SimConfig, SimulatedMarket, simulate

log = get_logger(__name__)

BAD_FRAME_KINDS: Final = (
    "bad_json",
    "missing_field",
    "non_positive_price",
    "non_positive_size",
    "unknown_symbol",
    "clock_skew",
)
MAX_LIMIT: Final = 50_000
RATE_LIMIT_TEXT: Final = (
    "You've exceeded the maximum requests per minute, please wait or upgrade your "
    "subscription to continue. https://polygon.io/pricing"
)


# ---------------------------------------------------------------------------------- tapes
class Tape:
    """The trades the fake market publishes, in delivery order."""

    symbols: tuple[str, ...]

    def __len__(self) -> int:
        raise NotImplementedError

    def ws_events(self, start: int, stop: int) -> list[dict[str, Any]]:
        """WebSocket ``T`` events for rows [start, stop) (``t`` in ms, tape time)."""
        raise NotImplementedError

    def delays_ns(self, start: int, stop: int) -> list[int]:
        """Reporting delay (arrival − SIP time) of each row, kept when restamping."""
        return [0] * (stop - start)

    def ts_ns(self, start: int, stop: int) -> list[int]:
        return [e["t"] * 1_000_000 for e in self.ws_events(start, stop)]

    def rest_results(self, rows: Sequence[int], ts: Sequence[int]) -> list[dict[str, Any]]:
        raise NotImplementedError


class SimTape(Tape):
    def __init__(self, market: SimulatedMarket) -> None:
        self.m = market
        self.symbols = market.symbols
        self._delay = market.arrival - market.ts_event

    def __len__(self) -> int:
        return len(self.m)

    def ws_events(self, start: int, stop: int) -> list[dict[str, Any]]:
        return self.m.ws_events(start, stop)

    def delays_ns(self, start: int, stop: int) -> list[int]:
        return list(self._delay[start:stop].tolist())

    def ts_ns(self, start: int, stop: int) -> list[int]:
        return list(self.m.ts_event[start:stop].tolist())

    def rest_results(self, rows: Sequence[int], ts: Sequence[int]) -> list[dict[str, Any]]:
        out = self.m.rest_results(np.asarray(rows, dtype=np.int64))
        for r, t in zip(out, ts, strict=True):
            r["sip_timestamp"] = t
            r["participant_timestamp"] = t - 150_000
        return out


class RecordedTape(Tape):
    """A recorded stream: a file of WebSocket frames (one JSON array per line, or one array)."""

    def __init__(self, path: Path) -> None:
        text = path.read_bytes().strip()
        events: list[dict[str, Any]] = []
        lines = [text] if text.startswith(b"[") and b"\n" not in text else text.splitlines()
        for line in lines:
            if line.strip():
                frame = orjson.loads(line)
                events.extend(e for e in frame if isinstance(e, dict) and e.get("ev") == "T")
        self.events = events
        self.symbols = tuple(sorted({e["sym"] for e in events}))

    def __len__(self) -> int:
        return len(self.events)

    def ws_events(self, start: int, stop: int) -> list[dict[str, Any]]:
        return [dict(e) for e in self.events[start:stop]]

    def rest_results(self, rows: Sequence[int], ts: Sequence[int]) -> list[dict[str, Any]]:
        out = []
        for i, t in zip(rows, ts, strict=True):
            e = self.events[i]
            r = {
                "exchange": e["x"], "id": e["i"], "participant_timestamp": t, "price": e["p"],
                "sequence_number": e["q"], "sip_timestamp": t, "size": e["s"], "tape": e.get("z"),
            }  # fmt: skip
            if e.get("c"):
                r["conditions"] = list(e["c"])
            out.append(r)
        return out


# ---------------------------------------------------------------------------------- config
@dataclass
class FakeConfig:
    api_keys: frozenset[str] = frozenset({"test-key"})
    batch: int = 250  # trades per frame
    rate: float | None = 100_000.0  # trades/s; None: as fast as clients read
    restamp: bool = True  # live mode: trades stamped with the wall clock at publication
    start_on_subscribe: bool = True  # the market opens when the first client subscribes
    drop_every: int | None = None  # abort each connection after this many data frames
    max_drops: int | None = None  # stop dropping after this many
    malformed_every: int | None = None  # inject one invalid frame after every N data frames
    malformed_kinds: tuple[str, ...] = BAD_FRAME_KINDS
    refuse_auth: bool = False
    max_connections: int = 1  # concurrent authenticated connections per key
    reject_logins: int = 0  # answer max_connections to the first K logins
    rest_429_every: int | None = None
    rest_503_every: int | None = None
    retry_after: str | None = "0"
    rest_page_limit_cap: int = MAX_LIMIT
    # Benchmark mode (needs restamp=False): every frame encoded and every trade indexed for REST
    # before the market opens, so serving costs the server next to nothing while measured.
    preencode: bool = False


@dataclass
class _Client:
    ws: ServerConnection
    key: str = ""
    authed: bool = False
    topics: set[str] = field(default_factory=set)
    all_trades: bool = False
    frames: int = 0
    dead: bool = False


class _Published:
    """Per-symbol index of published trades for REST: (ts_ns, row) kept sorted."""

    def __init__(self) -> None:
        self.keys: dict[str, list[tuple[int, int]]] = {}
        self._sorted: dict[str, bool] = {}
        self.count = 0

    def add(self, sym: str, ts: int, row: int) -> None:
        lst = self.keys.setdefault(sym, [])
        if lst and (ts, row) < lst[-1]:
            self._sorted[sym] = False
        lst.append((ts, row))
        self.count += 1

    def get(self, sym: str) -> list[tuple[int, int]]:
        lst = self.keys.get(sym, [])
        if not self._sorted.get(sym, True):
            lst.sort()
            self._sorted[sym] = True
        return lst


# ---------------------------------------------------------------------------------- server
class FakePolygonServer:
    def __init__(
        self, tape: Tape, config: FakeConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.tape = tape
        self.cfg = config or FakeConfig()
        self.host = host
        self.port = port
        self.clients: list[_Client] = []
        self.published = _Published()
        self.position = 0  # next tape row to publish
        self.done = asyncio.Event()
        self.injected: Counter[str] = Counter()
        self.drops = 0
        self.logins = 0
        self.rest_requests = 0
        self.rest_throttled = 0
        self.connections_total = 0
        self.max_connections_sent = 0
        self._market_started = asyncio.Event()
        self._server: Server | None = None
        self._market_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._bad_n = 0
        self._data_frames = 0
        self._tasks: set[asyncio.Future[None]] = set()
        self._published_ids: set[tuple[str, int, str]] = set()

    # ---------------------------------------------------------------- lifecycle
    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/stocks"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start_async(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.done = asyncio.Event()
        self._market_started = asyncio.Event()
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            compression=None,
            max_size=2**20,
            ping_interval=None,
        )
        self.port = self._server.sockets[0].getsockname()[1] if self.port == 0 else self.port
        self._market_task = asyncio.create_task(self._market())
        log.info("fake_polygon_started", ws=self.ws_url, rest=self.rest_url, trades=len(self.tape))

    async def stop_async(self) -> None:
        if self._market_task:
            self._market_task.cancel()
        if self._server:
            self._server.close()
            await self._server.wait_closed()

    def start(self) -> FakePolygonServer:
        """Run on a private event loop in a daemon thread; returns once listening."""
        ready = threading.Event()
        err: list[BaseException] = []

        def main() -> None:
            async def body() -> None:
                try:
                    await self.start_async()
                except BaseException as e:  # pragma: no cover - surfaced below
                    err.append(e)
                    ready.set()
                    return
                self._stop_evt = asyncio.Event()
                ready.set()
                await self._stop_evt.wait()
                await self.stop_async()

            asyncio.run(body())

        self._thread = threading.Thread(target=main, name="fake-polygon", daemon=True)
        self._thread.start()
        ready.wait(30)
        if err:
            raise err[0]
        return self

    def stop(self) -> None:
        if self._loop and self._thread:
            self._loop.call_soon_threadsafe(self._stop_evt.set)
            self._thread.join(10)

    def call(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on the server loop (thread-safe): ``call(server.inject, text)``."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn, *args)

    def __enter__(self) -> FakePolygonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- websocket
    async def _send(self, c: _Client, payload: Any) -> None:
        await c.ws.send(orjson.dumps(payload), text=True)

    def _status(self, status: str, message: str) -> list[dict[str, str]]:
        return [{"ev": "status", "status": status, "message": message}]

    async def _handle(self, ws: ServerConnection) -> None:
        c = _Client(ws)
        self.connections_total += 1
        try:
            await self._send(c, self._status("connected", "Connected Successfully"))
            async for raw in ws:
                try:
                    msg = orjson.loads(raw)
                    action, params = msg.get("action"), str(msg.get("params", ""))
                except (orjson.JSONDecodeError, AttributeError):
                    await self._send(c, self._status("error", "invalid message"))
                    continue
                if action == "auth":
                    await self._auth(c, params)
                    if not c.authed:
                        return
                elif not c.authed:
                    await self._send(c, self._status("error", "not authorized"))
                elif action == "subscribe":
                    topics = [p.strip() for p in params.split(",") if p.strip()]
                    c.topics.update(topics)
                    c.all_trades = (
                        "T.*" in c.topics or {f"T.{s}" for s in self.tape.symbols} <= c.topics
                    )
                    await self._send(
                        c,
                        [
                            {"ev": "status", "status": "success", "message": f"subscribed to: {t}"}
                            for t in topics
                        ],
                    )
                    if c not in self.clients:
                        self.clients.append(c)
                    self._market_started.set()
                elif action == "unsubscribe":
                    topics = [p.strip() for p in params.split(",") if p.strip()]
                    c.topics.difference_update(topics)
                    c.all_trades = "T.*" in c.topics
                    await self._send(
                        c,
                        [
                            {
                                "ev": "status",
                                "status": "success",
                                "message": f"unsubscribed to: {t}",
                            }
                            for t in topics
                        ],
                    )
                else:
                    await self._send(c, self._status("error", f"unknown action {action!r}"))
        except ConnectionClosed:
            pass
        finally:
            c.dead = True
            if c in self.clients:
                self.clients.remove(c)

    def _authed_count(self, key: str) -> int:
        return sum(1 for o in self.clients if o.authed and o.key == key and not o.dead)

    async def _auth(self, c: _Client, key: str) -> None:
        self.logins += 1
        if self.cfg.refuse_auth or key not in self.cfg.api_keys:
            await self._send(c, self._status("auth_failed", "authentication failed"))
            await c.ws.close(1000, "authentication failed")
            return
        if (
            self.logins <= self.cfg.reject_logins
            or self._authed_count(key) >= self.cfg.max_connections
        ):
            self.max_connections_sent += 1
            await self._send(
                c,
                self._status(
                    "max_connections",
                    "Maximum number of websocket connections exceeded. You have reached the "
                    "connection limit for your account. Please contact support at "
                    "https://polygon.io/contact to increase your limit.",
                ),
            )
            await c.ws.close(1008, "max_connections")
            return
        c.key, c.authed = key, True
        self.clients.append(c)
        await self._send(c, self._status("auth_success", "authenticated"))

    def _drop(self, c: _Client) -> None:
        """Abort the TCP connection: whatever is still in flight is lost."""
        c.dead = True
        if c in self.clients:
            self.clients.remove(c)
        self.drops += 1
        c.ws.transport.abort()

    def inject(self, text: str | bytes) -> None:
        """Send a raw frame to every subscribed client (tests: arbitrary malformed input)."""
        for c in list(self.clients):
            if c.topics and not c.dead:
                task = asyncio.ensure_future(c.ws.send(text, text=True))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def bad_frame(self, kind: str) -> bytes:
        """One invalid frame of the given class (never published to REST)."""
        self._bad_n += 1
        sym = self.tape.symbols[0]
        now_ms = time.time_ns() // 1_000_000
        ev: dict[str, Any] = {
            "ev": "T", "sym": sym, "x": 4, "i": f"bad-{self._bad_n}", "z": 3, "p": 100.0,
            "s": 100, "t": now_ms, "q": 1,
        }  # fmt: skip
        if kind == "bad_json":
            return b'[{"ev":"T","sym":"' + sym.encode() + b'","p":1.0,'
        if kind == "missing_field":
            del ev["p"]
        elif kind == "non_positive_price":
            ev["p"] = -1.0 if self._bad_n % 2 else 0.0
        elif kind == "non_positive_size":
            ev["s"] = 0
        elif kind == "unknown_symbol":
            ev["sym"] = "ZZZZQ"
        elif kind == "clock_skew":
            ev["t"] = now_ms - 86_400_000
        else:
            raise ValueError(f"unknown bad frame kind {kind!r}")
        return orjson.dumps([ev])

    # ---------------------------------------------------------------- market
    async def _market(self) -> None:
        cfg = self.cfg
        n = len(self.tape)
        sent_trades = 0
        syms_all = set(self.tape.symbols)
        kinds = cfg.malformed_kinds
        pre: list[bytes] | None = None
        if cfg.preencode and not cfg.restamp:
            pre = []
            for i in range(0, n, cfg.batch):
                j = min(n, i + cfg.batch)
                evs = self.tape.ws_events(i, j)
                self._publish(evs, self.tape.ts_ns(i, j), i)
                pre.append(orjson.dumps(evs))
        if cfg.start_on_subscribe:
            await self._market_started.wait()
        t0 = time.perf_counter()
        while self.position < n:
            i, j = self.position, min(n, self.position + cfg.batch)
            if pre is not None:
                full = pre[i // cfg.batch]
                self.position = j
                await self._broadcast(full, None)
                sent_trades += j - i
                if cfg.rate:
                    await asyncio.sleep(max(0.0, t0 + sent_trades / cfg.rate - time.perf_counter()))
                else:
                    await asyncio.sleep(0)
                continue
            events = self.tape.ws_events(i, j)
            if cfg.restamp:
                now = time.time_ns()
                ts = [now - d + k for k, d in enumerate(self.tape.delays_ns(i, j))]
                for e, t in zip(events, ts, strict=True):
                    e["t"] = t // 1_000_000
            else:
                ts = self.tape.ts_ns(i, j)
            self._publish(events, ts, i)
            self.position = j
            full = orjson.dumps(events)
            await self._broadcast(full, events)
            if cfg.malformed_every and self._data_frames % cfg.malformed_every == 0:
                kind = kinds[(self._data_frames // cfg.malformed_every - 1) % len(kinds)]
                bad = self.bad_frame(kind)
                targets = [c for c in self.clients if not c.dead and c.topics]
                if targets:
                    self.injected[kind] += 1
                    await asyncio.gather(*(self._deliver(c, bad, data=False) for c in targets))
            sent_trades += j - i
            if cfg.rate:
                ahead = t0 + sent_trades / cfg.rate - time.perf_counter()
                await asyncio.sleep(max(0.0, ahead))
            else:
                await asyncio.sleep(0)
        del syms_all
        self.done.set()
        log.info("fake_polygon_tape_done", published=self.published.count)

    def _publish(self, events: list[dict[str, Any]], ts: Sequence[int], first_row: int) -> None:
        pub_ids = self._published_ids
        for k, (e, t) in enumerate(zip(events, ts, strict=True)):
            ident = (e["sym"], e["x"], e["i"])
            if ident in pub_ids:  # a duplicate delivery: REST lists each trade once
                continue
            pub_ids.add(ident)
            self.published.add(e["sym"], t, first_row + k)

    async def _broadcast(self, full: bytes, events: list[dict[str, Any]] | None) -> None:
        """Send a data frame to every subscribed client (filtered per client if needed)."""
        self._data_frames += 1
        sends = []
        for c in list(self.clients):
            if c.dead or not c.topics:
                continue
            if c.all_trades:
                payload = full
            else:
                evs = events if events is not None else orjson.loads(full)
                sel = [e for e in evs if f"T.{e['sym']}" in c.topics]
                if not sel:
                    continue
                payload = orjson.dumps(sel)
            sends.append(self._deliver(c, payload))
        if sends:
            await asyncio.gather(*sends)

    async def _deliver(self, c: _Client, payload: bytes, data: bool = True) -> None:
        try:
            await c.ws.send(payload, text=True)
        except ConnectionClosed:
            c.dead = True
            return
        if data:
            c.frames += 1
            cfg = self.cfg
            if (
                cfg.drop_every
                and c.frames >= cfg.drop_every
                and (cfg.max_drops is None or self.drops < cfg.max_drops)
            ):
                self._drop(c)

    # ---------------------------------------------------------------- REST
    def _json(self, status: int, body: Any, extra: dict[str, str] | None = None) -> Response:
        headers = Headers({"Content-Type": "application/json", "Connection": "close"})
        for k, v in (extra or {}).items():
            headers[k] = v
        data = orjson.dumps(body)
        headers["Content-Length"] = str(len(data))
        return Response(status, HTTPStatus(status).phrase, headers, data)

    def _process_request(self, conn: ServerConnection, req: Request) -> Response | None:
        if req.headers.get("Upgrade", "").lower() == "websocket":
            return None
        url = urlsplit(req.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        key = (
            q.get("apiKey") or req.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        )
        rid = uuid.uuid4().hex
        if key not in self.cfg.api_keys:
            return self._json(
                401, {"status": "ERROR", "request_id": rid, "error": "Unknown API Key"}
            )
        self.rest_requests += 1
        n = self.rest_requests
        cfg = self.cfg
        ra = {"Retry-After": cfg.retry_after} if cfg.retry_after is not None else {}
        if cfg.rest_429_every and n % cfg.rest_429_every == 0:
            self.rest_throttled += 1
            return self._json(
                429,
                {"status": "ERROR", "request_id": rid,
                 "error": RATE_LIMIT_TEXT},
                ra,
            )  # fmt: skip
        if cfg.rest_503_every and n % cfg.rest_503_every == 0:
            self.rest_throttled += 1
            return self._json(
                503, {"status": "ERROR", "request_id": rid, "error": "unavailable"}, ra
            )
        parts = url.path.strip("/").split("/")
        try:
            if parts[:2] == ["v3", "trades"] and len(parts) == 3:
                return self._json(200, self._trades(parts[2], q, rid))
            if parts[:3] == ["v2", "aggs", "ticker"] and len(parts) == 9:
                return self._json(
                    200, self._aggs(parts[3], parts[5], parts[6], parts[7], parts[8], q, rid)
                )
            if parts == ["v3", "reference", "conditions"]:
                return self._json(200, self._conditions(q, rid))
            if parts == ["v1", "marketstatus", "now"]:
                return self._json(200, self._market_status())
        except (ValueError, KeyError) as err:
            return self._json(
                400, {"status": "ERROR", "request_id": rid, "error": f"bad request: {err}"}
            )
        return self._json(404, {"status": "NOT_FOUND", "request_id": rid, "message": "not found"})

    def _market_status(self) -> dict[str, Any]:
        return {
            "market": "open",
            "serverTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "exchanges": {"nyse": "open", "nasdaq": "open", "otc": "open"},
            "earlyHours": False,
            "afterHours": False,
        }

    def _cursor(self, state: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(state)).decode().rstrip("=")

    def _uncursor(self, cur: str) -> dict[str, Any]:
        state: dict[str, Any] = orjson.loads(base64.urlsafe_b64decode(cur + "=" * (-len(cur) % 4)))
        return state

    def _trades(self, sym: str, q: dict[str, str], rid: str) -> dict[str, Any]:
        if "cursor" in q:
            state = self._uncursor(q["cursor"])
        else:
            state = {k: q[k] for k in q if k.startswith("timestamp") or k in ("order", "limit")}
        order = state.get("order", "desc")
        limit = min(int(state.get("limit", 1000)), self.cfg.rest_page_limit_cap, MAX_LIMIT)
        keys = self.published.get(sym)
        lo, hi = 0, len(keys)
        big = 1 << 62
        if "timestamp" in state:
            v = int(state["timestamp"])
            lo, hi = bisect.bisect_left(keys, (v, -1)), bisect.bisect_right(keys, (v, big))
        if "timestamp.gte" in state:
            lo = max(lo, bisect.bisect_left(keys, (int(state["timestamp.gte"]), -1)))
        if "timestamp.gt" in state:
            lo = max(lo, bisect.bisect_right(keys, (int(state["timestamp.gt"]), big)))
        if "timestamp.lte" in state:
            hi = min(hi, bisect.bisect_right(keys, (int(state["timestamp.lte"]), big)))
        if "timestamp.lt" in state:
            hi = min(hi, bisect.bisect_left(keys, (int(state["timestamp.lt"]), -1)))
        after = state.get("after")  # cursor position: last (ts, row) returned
        if order == "asc":
            if after is not None:
                lo = max(lo, bisect.bisect_right(keys, tuple(after)))
            sel = keys[lo : min(hi, lo + limit)] if lo < hi else []
            more = lo + len(sel) < hi
        else:
            if after is not None:
                hi = min(hi, bisect.bisect_left(keys, tuple(after)))
            sel = keys[max(lo, hi - limit) : hi][::-1] if lo < hi else []
            more = hi - len(sel) > lo
        results = self.tape.rest_results([r for _, r in sel], [t for t, _ in sel])
        body: dict[str, Any] = {"results": results, "status": "OK", "request_id": rid}
        if more and sel:
            state = {**state, "after": list(sel[-1])}
            body["next_url"] = f"{self.rest_url}/v3/trades/{sym}?cursor={self._cursor(state)}"
        return body

    def _aggs(
        self, sym: str, mult: str, span: str, frm: str, to: str, q: dict[str, str], rid: str
    ) -> dict[str, Any]:
        if not isinstance(self.tape, SimTape):
            raise ValueError("aggregates need a simulator tape")
        spans = {"second": 1_000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
        if span not in spans:
            raise ValueError(f"timespan {span!r}")
        width = int(mult) * spans[span]
        if "cursor" in q:
            st = self._uncursor(q["cursor"])
            start_ms, end_ms, limit = st["from"], st["to"], st["limit"]
        else:
            start_ms, end_ms = _ms(frm, False), _ms(to, True)
            limit = min(int(q.get("limit", 5000)), MAX_LIMIT)
        m = self.tape.m
        sel = (m.sym == m.symbols.index(sym)) & ~m.is_duplicate
        t_ms = m.ts_event[sel] // 1_000_000
        inwin = (t_ms >= start_ms) & (t_ms <= end_ms)
        t_ms, p, v = t_ms[inwin], m.price[sel][inwin], m.size[sel][inwin].astype(np.float64)
        order = np.argsort(t_ms, kind="stable")
        t_ms, p, v = t_ms[order], p[order], v[order]
        bucket = t_ms // width * width
        starts, first = np.unique(bucket, return_index=True)
        bounds = np.r_[first, len(bucket)]
        results = []
        for b, s0, s1 in zip(
            starts.tolist()[:limit], bounds[:-1].tolist(), bounds[1:].tolist(), strict=False
        ):
            pp, vv = p[s0:s1], v[s0:s1]
            results.append({
                "v": float(vv.sum()), "vw": round(float((pp * vv).sum() / vv.sum()), 4),
                "o": float(pp[0]), "c": float(pp[-1]), "h": float(pp.max()), "l": float(pp.min()),
                "t": int(b), "n": int(s1 - s0),
            })  # fmt: skip
        body: dict[str, Any] = {
            "ticker": sym, "queryCount": len(results), "resultsCount": len(results),
            "adjusted": q.get("adjusted", "true") == "true", "results": results, "status": "OK",
            "request_id": rid,
        }  # fmt: skip
        if len(starts) > limit:
            nxt = {"from": int(starts[limit]), "to": end_ms, "limit": limit}
            body["next_url"] = (
                f"{self.rest_url}/v2/aggs/ticker/{sym}/range/{mult}/{span}/{nxt['from']}/{to}"
                f"?cursor={self._cursor(nxt)}"
            )
        return body

    def _conditions(self, q: dict[str, str], rid: str) -> dict[str, Any]:
        full = bundled_conditions_response()["results"]
        if "cursor" in q:
            st = self._uncursor(q["cursor"])
            off, limit = st["off"], st["limit"]
        else:
            off, limit = 0, min(int(q.get("limit", 10)), 1000, self.cfg.rest_page_limit_cap)
        page = full[off : off + limit]
        body: dict[str, Any] = {
            "results": page,
            "status": "OK",
            "request_id": rid,
            "count": len(page),
        }
        if off + limit < len(full):
            cur = self._cursor({"off": off + limit, "limit": limit})
            body["next_url"] = f"{self.rest_url}/v3/reference/conditions?cursor={cur}"
        return body


def _ms(v: str, end: bool) -> int:
    if v.isdigit():
        return int(v)
    import datetime as dt

    d = dt.datetime.strptime(v, "%Y-%m-%d").replace(tzinfo=dt.UTC)
    ms = int(d.timestamp() * 1000)
    return ms + 86_400_000 - 1 if end else ms


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m signalstack.marketdata.fake_polygon``: serve a simulated market until killed."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--symbols", default="AAPL,MSFT,NVDA,AMZN,TSLA,SPY")
    ap.add_argument("--trades-per-day", type=int, default=50_000)
    ap.add_argument("--recorded", type=Path, default=None, help="a file of recorded WS frames")
    ap.add_argument("--rate", type=float, default=100_000.0, help="trades/s; 0 = as fast as read")
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--key", default="test-key")
    ap.add_argument("--no-restamp", action="store_true")
    ap.add_argument("--preencode", action="store_true", help="benchmark mode (with --no-restamp)")
    ap.add_argument("--drop-every", type=int, default=None)
    ap.add_argument("--malformed-every", type=int, default=None)
    ap.add_argument("--port-file", type=Path, default=None, help="write the bound port here")
    a = ap.parse_args(argv)
    if a.recorded:
        tape: Tape = RecordedTape(a.recorded)
    else:
        syms = tuple(s.strip() for s in a.symbols.split(",") if s.strip())
        tape = SimTape(
            simulate(SimConfig(seed=a.seed, symbols=syms, trades_per_day=a.trades_per_day))
        )
    cfg = FakeConfig(
        api_keys=frozenset({a.key}), batch=a.batch, rate=a.rate or None, restamp=not a.no_restamp,
        preencode=a.preencode,
        drop_every=a.drop_every, malformed_every=a.malformed_every,
    )  # fmt: skip

    async def body() -> None:
        srv = FakePolygonServer(tape, cfg, a.host, a.port)
        await srv.start_async()
        if a.port_file:
            a.port_file.write_text(str(srv.port))
        print(f"fake polygon: ws {srv.ws_url}  rest {srv.rest_url}  trades {len(tape)}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(body())


if __name__ == "__main__":
    main()
