"""A fake Polygon stocks server: WebSocket and REST on one loopback port, one process.

It speaks the documented protocol (POLYGON.md) well enough for the official client (``massive``)
to be pointed at it unchanged: ``connected`` on open, ``auth`` → ``auth_success``/``auth_failed``,
``subscribe`` → one ``success`` status per served topic (``T.<ticker>``/``T.*`` trades,
``AM.<ticker>``/``AM.*`` minute aggregates sent as the replay passes each minute; any other
channel is refused with an ``error`` status), frames that are JSON arrays of events with
millisecond times. REST: ``/v3/trades/{T}`` and ``/v3/quotes/{T}`` (``timestamp`` and
``timestamp.gte/gt/lte/lt`` as a date ``YYYY-MM-DD`` or nanoseconds, ``order`` defaulting to desc,
``limit`` ≤ 50000, ``next_url`` with a cursor and no key), ``/v2/aggs/ticker/{T}/range/...`` (bars
by the consolidated condition update rules, the features library's bar code), ``/v2/aggs/ticker/
{T}/prev``, ``/v2/last/trade/{T}``, ``/v3/reference/conditions`` (``asset_class``, ``data_type``)
and ``/v1/marketstatus/now``; 401 without a key, 400 with a message for a bad parameter.
Non-upgrade HTTP requests on the WebSocket port are answered as REST.

The market is a tape (the simulator or a recorded file), replayed over the WebSocket at ``rate``
trades/s (once the first client subscribes, with ``start_on_subscribe``) whether or not anybody is
connected afterwards: a client that drops misses trades, as on the real feed. Two modes:

- **history** (``restamp=False``): the tape is a past day. REST serves all of it from the start,
  with no WebSocket client needed; the WebSocket replays it with its own timestamps.
- **live** (``restamp=True``): the tape plays as today. Each trade is stamped with the wall clock
  at publication (keeping its reporting delay) and REST serves what has been published, as the
  real service does during the session.

When the tape ends, subscribers get a status (``tape_ended``, or ``tape_restarted`` with
``on_end="loop"``, which replays it: in live mode with fresh stamps and ``-<loop>`` trade ids).
A subscriber whose unsent data (its connection's write buffer) passes ``slow_consumer_bytes`` gets
Polygon's ``slow_consumer`` status and is disconnected; the others and REST are never held up.
With ``rate=None`` the tape goes as fast as the fastest subscriber reads.

Fault knobs (:class:`FakeConfig`): drop each connection after N data frames (abort, data in
flight lost), inject malformed/invalid frames every N frames (one class after another), refuse
auth, answer ``max_connections`` to the first K logins (and enforce the connection limit),
throttle (``rate``), 429 or 503 every Nth REST request with ``Retry-After``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import datetime as dt
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import parse_qs, quote, urlsplit
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from signalstack.features.bars import TradeArrays, aggregate_minutes
from signalstack.features.conditions import bundled_rules
from signalstack.features.sessions import NS_PER_MINUTE
from signalstack.logs import get_logger
from signalstack.marketdata.conditions import bundled_conditions_response
from signalstack.marketdata.simulator import SimConfig, SimulatedMarket, simulate

log = get_logger(__name__)

NY: Final = ZoneInfo("America/New_York")
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
SLOW_CONSUMER_TEXT: Final = (
    "Your connection was closed because you are not consuming messages fast enough: the "
    "server-side buffer for this connection is full."
)
CLOSE_TRY_AGAIN_LATER: Final = 1013
QUOTE_LEAD_NS: Final = 1_000  # a trade's quote is stamped this long before it
_SPAN_NS: Final = {"second": 1_000_000_000, "minute": NS_PER_MINUTE, "hour": 60 * NS_PER_MINUTE}
_MAX_MS: Final = 2**62 // 1_000_000
OnEnd = Literal["stop", "loop"]
SERVED_CHANNELS: Final = ("T", "AM")  # trades, and minute aggregates built from them

I8 = npt.NDArray[np.int64]


class BadRequestError(ValueError):
    """A REST parameter the fake (and Polygon) cannot take: a 400 with this message."""


# ---------------------------------------------------------------------------------- tapes
@dataclass(frozen=True)
class TapeColumns:
    """Every tape row as numpy columns (delivery order): what REST, bars and quotes read."""

    sym: npt.NDArray[np.int32]  # index into Tape.symbols
    ts: I8  # SIP time, ns (tape time)
    price: npt.NDArray[np.float64]
    size: npt.NDArray[np.float64]
    seq: I8
    flags: npt.NDArray[np.uint8]  # eligibility (signalstack.features.conditions)
    duplicate: npt.NDArray[np.bool_]  # a repeat of an identity delivered earlier

    def __len__(self) -> int:
        return len(self.ts)


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
        return list(self.columns.ts[start:stop].tolist())

    def rest_results(self, rows: Sequence[int], ts: Sequence[int]) -> list[dict[str, Any]]:
        raise NotImplementedError

    @cached_property
    def columns(self) -> TapeColumns:
        return self._columns()

    def _columns(self) -> TapeColumns:
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

    def rest_results(self, rows: Sequence[int], ts: Sequence[int]) -> list[dict[str, Any]]:
        out = self.m.rest_results(np.asarray(rows, dtype=np.int64))
        for r, t in zip(out, ts, strict=True):
            r["sip_timestamp"] = t
            r["participant_timestamp"] = t - 150_000
        return out

    def _columns(self) -> TapeColumns:
        m = self.m
        pats = np.empty(len(m.patterns), dtype=object)
        pats[:] = [list(p) for p in m.patterns]
        flags = bundled_rules().flags(pats).flags
        return TapeColumns(
            sym=m.sym.astype(np.int32), ts=m.ts_event, price=m.price,
            size=m.size.astype(np.float64), seq=m.sequence, flags=flags[m.cond_pattern],
            duplicate=m.is_duplicate,
        )  # fmt: skip


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

    def _columns(self) -> TapeColumns:
        ev = self.events
        code = {s: k for k, s in enumerate(self.symbols)}
        conds = np.empty(len(ev), dtype=object)
        conds[:] = [list(e.get("c") or ()) for e in ev]
        seen: set[tuple[str, int, str]] = set()
        dup = np.zeros(len(ev), dtype=bool)
        for k, e in enumerate(ev):
            ident = (e["sym"], e["x"], e["i"])
            dup[k] = ident in seen
            seen.add(ident)
        return TapeColumns(
            sym=np.array([code[e["sym"]] for e in ev], dtype=np.int32),
            ts=np.array([e["t"] * 1_000_000 for e in ev], dtype=np.int64),
            price=np.array([e["p"] for e in ev], dtype=np.float64),
            size=np.array([e["s"] for e in ev], dtype=np.float64),
            seq=np.array([e.get("q", 0) for e in ev], dtype=np.int64),
            flags=bundled_rules().flags(conds).flags,
            duplicate=dup,
        )


# ---------------------------------------------------------------------------------- config
@dataclass
class FakeConfig:
    api_keys: frozenset[str] = frozenset({"test-key"})
    batch: int = 250  # trades per frame
    rate: float | None = 100_000.0  # trades/s; None: as fast as the fastest subscriber reads
    restamp: bool = True  # live mode: trades stamped with the wall clock at publication
    start_on_subscribe: bool = True  # the WebSocket replay starts when the first client subscribes
    on_end: OnEnd = "stop"  # at the end of the tape: stop (status tape_ended) or loop
    slow_consumer_bytes: int = 64 * 2**20  # unsent bytes on one connection before slow_consumer
    pace_bytes: int = 2**20  # rate=None: wait while the fastest reader has more than this unsent
    seed: int = 7  # of the quote (spread) model
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
    # Benchmark mode (needs restamp=False): every frame encoded before the market opens, so
    # serving costs the server next to nothing while measured.
    preencode: bool = False


@dataclass
class _Client:
    ws: ServerConnection
    key: str = ""
    authed: bool = False
    topics: set[str] = field(default_factory=set)
    all_trades: bool = False
    trade_topics: bool = False  # subscribed to any T.<ticker>
    frames: int = 0
    dead: bool = False

    def unsent(self) -> int:
        return int(self.ws.transport.get_write_buffer_size())

    def listening(self) -> bool:
        """Subscribed, and the connection is open (not closing: it reads nothing more)."""
        return bool(self.topics) and not self.dead and self.ws.state is State.OPEN


class _SymbolIndex:
    """Served trades of one symbol: (ts_ns, gid) sorted; gid = loop × len(tape) + row."""

    def __init__(self) -> None:
        self._chunks: list[tuple[I8, I8]] = []
        self._ts: I8 = np.zeros(0, np.int64)
        self._gid: I8 = np.zeros(0, np.int64)

    def add(self, ts: I8, gid: I8) -> None:
        self._chunks.append((ts, gid))

    def arrays(self) -> tuple[I8, I8]:
        if self._chunks:
            ts = np.concatenate([self._ts, *(c[0] for c in self._chunks)])
            gid = np.concatenate([self._gid, *(c[1] for c in self._chunks)])
            self._chunks.clear()
            order = np.lexsort((gid, ts))
            self._ts, self._gid = ts[order], gid[order]
        return self._ts, self._gid


class _Published:
    """Per-symbol index of the trades REST serves."""

    def __init__(self, symbols: Sequence[str]) -> None:
        self.symbols = tuple(symbols)
        self.index = {s: _SymbolIndex() for s in symbols}
        self.count = 0

    def add(self, sym: npt.NDArray[np.int32], ts: I8, gid: I8) -> None:
        if len(ts) == 0:
            return
        for k in np.unique(sym).tolist():
            m = sym == k
            self.index[self.symbols[k]].add(ts[m], gid[m])
        self.count += len(ts)

    def arrays(self, sym: str) -> tuple[I8, I8]:
        idx = self.index.get(sym)
        return idx.arrays() if idx else (np.zeros(0, np.int64), np.zeros(0, np.int64))

    def get(self, sym: str) -> list[tuple[int, int]]:
        """(ts_ns, gid) of every served trade of ``sym``, sorted."""
        ts, gid = self.arrays(sym)
        return list(zip(ts.tolist(), gid.tolist(), strict=True))


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
        self.published = _Published(tape.symbols)
        self.position = 0  # next tape row to publish
        self.loop_number = 0  # completed passes over the tape
        self.ended = False  # the tape ended and does not loop
        self.done = asyncio.Event()  # set when the first pass over the tape is published
        self.injected: Counter[str] = Counter()
        self.drops = 0
        self.slow_consumers = 0
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
        self._t0 = 0.0  # perf_counter at the start of the replay (set when it starts)
        self._sent_trades = 0
        self._am_pending: dict[int, list[tuple[I8, I8]]] = {}  # minute -> (rows, ts) sent
        self._am_minute: int | None = None  # the minute (ns // 1m) the replay has reached
        self._am_sent_upto: int | None = None  # minutes before this one have been sent
        self._am_day: dict[str, list[float]] = {}  # sym -> [volume, Σ vw·v, official open]

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
        cols = self.tape.columns
        if not self.cfg.restamp:  # history: REST serves the whole day from the start
            keep = ~cols.duplicate
            rows = np.flatnonzero(keep).astype(np.int64)
            self.published.add(cols.sym[keep], cols.ts[keep], rows)
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            compression=None,
            max_size=2**20,
            ping_interval=None,
            # never paused below the slow-consumer limit: one reader cannot hold the market up
            write_limit=self.cfg.slow_consumer_bytes + 2**20,
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
                    await self._subscribe(c, params)
                elif action == "unsubscribe":
                    topics = [p.strip() for p in params.split(",") if p.strip()]
                    c.topics.difference_update(topics)
                    self._topics_changed(c)
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

    async def _subscribe(self, c: _Client, params: str) -> None:
        """Acknowledge each trade topic; refuse every other channel with an ``error`` status."""
        replies: list[dict[str, str]] = []
        accepted = []
        for t in (p.strip() for p in params.split(",")):
            if not t:
                continue
            ev, _, ticker = t.partition(".")
            if ev in SERVED_CHANNELS and ticker:
                accepted.append(t)
                replies.append(
                    {"ev": "status", "status": "success", "message": f"subscribed to: {t}"}
                )
            else:
                replies.append({
                    "ev": "status", "status": "error",
                    "message": f"subscription refused: {t} is not served by this fake Polygon "
                    "server, which serves trades and minute aggregates (T.<ticker>, AM.<ticker>, "
                    "or .* for all)",
                })  # fmt: skip
        c.topics.update(accepted)
        self._topics_changed(c)
        if self.ended:
            replies.extend(self._end_status())
        await self._send(c, replies)
        if c.topics:
            if c not in self.clients:
                self.clients.append(c)
            self._market_started.set()

    def _topics_changed(self, c: _Client) -> None:
        c.all_trades = "T.*" in c.topics or {f"T.{s}" for s in self.tape.symbols} <= c.topics
        c.trade_topics = any(t[:2] == "T." for t in c.topics)

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

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def inject(self, text: str | bytes) -> None:
        """Send a raw frame to every subscribed client (tests: arbitrary malformed input)."""
        for c in list(self.clients):
            if c.topics and not c.dead:
                self._spawn(c.ws.send(text, text=True))

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
        pre: list[bytes] | None = None
        if cfg.preencode and not cfg.restamp:
            pre = [
                orjson.dumps(self.tape.ws_events(i, min(n, i + cfg.batch)))
                for i in range(0, n, cfg.batch)
            ]
        if cfg.start_on_subscribe:
            await self._market_started.wait()
        self._t0 = time.perf_counter()
        self._sent_trades = 0
        while True:
            await self._play(pre)
            if self._am_minute is not None:  # the last minute of the tape is complete now
                self._emit_minute_aggregates(self._am_minute + 1)
            self.loop_number += 1
            if not self.done.is_set():
                self.done.set()
                log.info("fake_polygon_tape_done", published=self.published.count)
            self.ended = cfg.on_end != "loop"
            self._broadcast(orjson.dumps(self._end_status()), None, data=False)
            if self.ended or n == 0:
                return
            self.position = 0

    def _end_status(self) -> list[dict[str, str]]:
        n = len(self.tape)
        if self.cfg.on_end == "loop":
            return self._status(
                "tape_restarted",
                f"the simulated tape ended after {n} trades; replaying it from the start "
                f"(pass {self.loop_number + 1})",
            )
        return self._status(
            "tape_ended",
            f"the simulated tape ended after {n} trades: no more data on this server "
            "(run it with on_end=loop / --loop to replay the tape)",
        )

    async def _play(self, pre: list[bytes] | None) -> None:
        """One pass over the tape."""
        cfg = self.cfg
        n = len(self.tape)
        cols = self.tape.columns
        kinds = cfg.malformed_kinds
        loop = self.loop_number
        self._am_pending, self._am_minute, self._am_sent_upto, self._am_day = {}, None, None, {}
        while self.position < n:
            i, j = self.position, min(n, self.position + cfg.batch)
            events: list[dict[str, Any]] | None = None
            sent_ts = cols.ts[i:j]
            if pre is not None:
                full = pre[i // cfg.batch]
            else:
                events = self.tape.ws_events(i, j)
                if cfg.restamp:
                    now = time.time_ns()
                    ts = np.array(
                        [now - d + k for k, d in enumerate(self.tape.delays_ns(i, j))],
                        dtype=np.int64,
                    )
                    for e, t in zip(events, ts.tolist(), strict=True):
                        e["t"] = t // 1_000_000
                        if loop:
                            e["i"] = _loop_id(e["i"], loop)
                    keep = ~cols.duplicate[i:j]
                    gid = np.arange(i, j, dtype=np.int64) + loop * n
                    self.published.add(cols.sym[i:j][keep], ts[keep], gid[keep])
                    sent_ts = ts
                full = orjson.dumps(events)
            self.position = j
            self._broadcast(full, events)
            self._minute_aggregates(i, j, sent_ts)
            if cfg.malformed_every and self._data_frames % cfg.malformed_every == 0:
                kind = kinds[(self._data_frames // cfg.malformed_every - 1) % len(kinds)]
                bad = self.bad_frame(kind)
                if any(c.listening() for c in self.clients):
                    self.injected[kind] += 1
                    self._broadcast(bad, None, data=False)
            self._sent_trades += j - i
            if cfg.rate:
                ahead = self._t0 + self._sent_trades / cfg.rate - time.perf_counter()
                await asyncio.sleep(max(0.0, ahead))
            else:
                await self._wait_for_readers()

    def _minute_aggregates(self, i: int, j: int, sent_ts: I8) -> None:
        """Keep rows [i, j) by the minute they were sent for; when the replay's clock passes a
        minute, send ``AM`` events for the minutes it completed (prints that arrive after their
        minute was sent stay out, as on the real feed)."""
        cols = self.tape.columns
        keep = ~cols.duplicate[i:j]
        rows, ts = np.arange(i, j, dtype=np.int64)[keep], sent_ts[keep]
        if not len(ts):
            return
        minutes = ts // NS_PER_MINUTE
        for m in np.unique(minutes).tolist():
            sel = minutes == m
            self._am_pending.setdefault(m, []).append((rows[sel], ts[sel]))
        minute = int(minutes.max())
        if self._am_minute is not None and minute > self._am_minute:
            self._emit_minute_aggregates(minute)
        self._am_minute = max(minute, self._am_minute or minute)

    def _emit_minute_aggregates(self, end_minute: int) -> None:
        """``AM`` events for the minutes before ``end_minute`` not sent yet, to subscribers."""
        upto = self._am_sent_upto
        done = [m for m in self._am_pending if m < end_minute]
        chunks = [c for m in done if upto is None or m >= upto for c in self._am_pending[m]]
        for m in done:  # sent now, or arrived too late to be
            del self._am_pending[m]
        self._am_sent_upto = end_minute
        subs = [c for c in self.clients if c.listening() and any(t[:3] == "AM." for t in c.topics)]
        if not subs or not chunks:
            return
        cols = self.tape.columns
        rows = np.concatenate([c[0] for c in chunks])
        ts = np.concatenate([c[1] for c in chunks])
        wanted = set(self.tape.symbols)
        if not any("AM.*" in c.topics for c in subs):
            wanted &= {t[3:] for c in subs for t in c.topics if t[:3] == "AM."}
        minute = _bucketer("minute", 1)
        events: list[dict[str, Any]] = []
        for sym in sorted(wanted):
            sel = cols.sym[rows] == self.tape.symbols.index(sym)
            bars = _bars(cols, ts[sel], rows[sel], minute, 0, _MAX_MS)
            if not bars:
                continue
            day = self._am_day.setdefault(sym, [0.0, 0.0, bars[0]["o"]])
            for bar in bars:
                vw = bar.get("vw", bar["c"])
                day[0] += bar["v"]
                day[1] += vw * bar["v"]
                events.append({
                    "ev": "AM", "sym": sym, "v": int(bar["v"]), "av": int(day[0]), "op": day[2],
                    "vw": vw, "o": bar["o"], "c": bar["c"], "h": bar["h"], "l": bar["l"],
                    "a": round(day[1] / day[0], 4) if day[0] else vw,
                    "z": int(bar["v"] / bar["n"]) if bar["n"] else 0,
                    "s": bar["t"], "e": bar["t"] + 60_000,
                })  # fmt: skip
        if not events:
            return
        events.sort(key=lambda e: (e["s"], e["sym"]))
        for c in subs:
            sel_ev = (
                events
                if "AM.*" in c.topics
                else [e for e in events if f"AM.{e['sym']}" in c.topics]
            )
            if sel_ev:
                self._deliver(c, orjson.dumps(sel_ev), data=False)

    async def _wait_for_readers(self) -> None:
        """``rate=None``: go on once the fastest subscriber has at most ``pace_bytes`` unsent.
        With no subscriber the first pass goes on (REST gets the live tape); a replay waits."""
        await asyncio.sleep(0)
        while True:
            live = [c for c in self.clients if c.listening()]
            if not live and self.loop_number == 0:
                return
            if live and min(c.unsent() for c in live) <= self.cfg.pace_bytes:
                return
            await asyncio.sleep(0.001 if live else 0.05)

    def _broadcast(
        self, full: bytes, events: list[dict[str, Any]] | None, *, data: bool = True
    ) -> None:
        """Write a frame to every subscribed client (filtered per client if needed). Never
        waits for a client: one whose unsent data passes the limit is disconnected instead."""
        if data:
            self._data_frames += 1
        for c in list(self.clients):
            if not c.listening():
                continue
            if not data or c.all_trades:
                payload = full
            elif not c.trade_topics:
                continue
            else:
                evs = events if events is not None else orjson.loads(full)
                sel = [e for e in evs if f"T.{e['sym']}" in c.topics]
                if not sel:
                    continue
                payload = orjson.dumps(sel)
            self._deliver(c, payload, data)

    def _deliver(self, c: _Client, payload: bytes, data: bool = True) -> None:
        if c.ws.transport.is_closing():
            c.dead = True
            return
        if c.unsent() + len(payload) > self.cfg.slow_consumer_bytes:
            self._slow_consumer(c)
            return
        # Below the write limit the send completes without waiting: no client holds the loop.
        drop = False
        if data:
            c.frames += 1
            cfg = self.cfg
            drop = bool(
                cfg.drop_every
                and c.frames >= cfg.drop_every
                and (cfg.max_drops is None or self.drops < cfg.max_drops)
            )
            if drop:  # counted now, so no other frame schedules a drop of its own
                c.dead = True
                if c in self.clients:
                    self.clients.remove(c)
                self.drops += 1
        self._spawn(self._send_frame(c, payload, drop))

    async def _send_frame(self, c: _Client, payload: bytes, drop: bool = False) -> None:
        try:
            await c.ws.send(payload, text=True)
        except ConnectionClosed:
            c.dead = True
        if drop:  # abort the TCP connection: whatever is still in flight is lost
            c.ws.transport.abort()

    def _slow_consumer(self, c: _Client) -> None:
        c.dead = True
        if c in self.clients:
            self.clients.remove(c)
        self.slow_consumers += 1
        log.warning("fake_polygon_slow_consumer", unsent_bytes=c.unsent())

        async def close() -> None:
            try:
                await self._send(c, self._status("slow_consumer", SLOW_CONSUMER_TEXT))
                await c.ws.close(CLOSE_TRY_AGAIN_LATER, "slow consumer")
            except ConnectionClosed:
                pass

        self._spawn(close())

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
        try:
            body = self._route(url.path.strip("/").split("/"), q, rid)
        except BadRequestError as err:
            return self._json(400, {"status": "ERROR", "request_id": rid, "error": str(err)})
        except Exception:  # a bug here must not look like a client error or kill the server
            log.exception("fake_polygon_rest_error", path=url.path)
            return self._json(
                500,
                {"status": "ERROR", "request_id": rid, "error": "internal error (fake server)"},
            )
        if body is None:
            return self._json(
                404, {"status": "NOT_FOUND", "request_id": rid, "message": "not found"}
            )
        status, payload = body
        return self._json(status, payload)

    def _route(
        self, parts: list[str], q: dict[str, str], rid: str
    ) -> tuple[int, dict[str, Any]] | None:
        if parts[:2] == ["v3", "trades"] and len(parts) == 3:
            return 200, self._ticks(parts[2], q, rid, quotes=False)
        if parts[:2] == ["v3", "quotes"] and len(parts) == 3:
            return 200, self._ticks(parts[2], q, rid, quotes=True)
        if parts[:3] == ["v2", "aggs", "ticker"] and len(parts) == 9 and parts[4] == "range":
            return 200, self._aggs(parts[3], parts[5], parts[6], parts[7], parts[8], q, rid)
        if parts[:3] == ["v2", "aggs", "ticker"] and len(parts) == 5 and parts[4] == "prev":
            return 200, self._prev_close(parts[3], q, rid)
        if parts[:3] == ["v2", "last", "trade"] and len(parts) == 4:
            return self._last_trade(parts[3], rid)
        if parts == ["v3", "reference", "conditions"]:
            return 200, self._conditions(q, rid)
        if parts == ["v1", "marketstatus", "now"]:
            return 200, self._market_status()
        return None

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
        try:
            state = orjson.loads(base64.urlsafe_b64decode(cur + "=" * (-len(cur) % 4)))
        except (binascii.Error, ValueError) as err:
            raise BadRequestError("cursor: not a cursor this server issued") from err
        if not isinstance(state, dict):
            raise BadRequestError("cursor: not a cursor this server issued")
        return state

    def _rows(self, gid: I8) -> tuple[I8, I8]:
        """Tape rows and loop numbers of served ids."""
        n = max(1, len(self.tape))
        return gid % n, gid // n

    def _ticks(self, sym: str, q: dict[str, str], rid: str, *, quotes: bool) -> dict[str, Any]:
        """``/v3/trades/{T}`` or ``/v3/quotes/{T}``: filtered, ordered, paged by cursor."""
        if "cursor" in q:
            state = self._uncursor(q["cursor"])
        else:
            state = {k: q[k] for k in q if k.startswith("timestamp") or k in ("order", "limit")}
            _check_choice("sort", q.get("sort", "timestamp"), ("timestamp",))
        order = _check_choice("order", str(state.get("order", "desc")), ("asc", "desc"))
        limit = min(_int_param("limit", state.get("limit", 1000), 1, MAX_LIMIT),
                    self.cfg.rest_page_limit_cap)  # fmt: skip
        ts, gid = self.published.arrays(sym)
        if quotes:
            ts = ts - QUOTE_LEAD_NS
        lo, hi = _time_bounds(ts, state)
        after = state.get("after")  # cursor position: last (ts, gid) returned
        if order == "asc":
            if after is not None:
                lo = max(lo, _position(ts, gid, int(after[0]), int(after[1]), "right"))
            sel = np.arange(lo, min(hi, lo + limit))
            more = lo + len(sel) < hi
        else:
            if after is not None:
                hi = min(hi, _position(ts, gid, int(after[0]), int(after[1]), "left"))
            sel = np.arange(max(lo, hi - limit), hi)[::-1]
            more = hi - len(sel) > lo
        sts, sgid = ts[sel], gid[sel]
        results = self._quotes(sgid, sts) if quotes else self._trade_results(sgid, sts)
        body: dict[str, Any] = {"results": results, "status": "OK", "request_id": rid}
        if more and len(sel):
            state = {**state, "after": [int(sts[-1]), int(sgid[-1])]}
            kind = "quotes" if quotes else "trades"
            body["next_url"] = (
                f"{self.rest_url}/v3/{kind}/{quote(sym)}?cursor={self._cursor(state)}"
            )
        return body

    def _trade_results(self, gid: I8, ts: I8) -> list[dict[str, Any]]:
        rows, loops = self._rows(gid)
        out = self.tape.rest_results(rows.tolist(), ts.tolist())
        for r, lp in zip(out, loops.tolist(), strict=True):
            if lp:
                r["id"] = _loop_id(r["id"], lp)
        return out

    @cached_property
    def _spread_model(self) -> dict[str, npt.NDArray[Any]]:
        """A seeded NBBO around each trade: the trade inside a 1–3 tick half-spread each side,
        sizes in shares by the round-lot tiers (POLYGON.md), a few exchanges."""
        cols = self.tape.columns
        n = len(cols)
        rng = np.random.default_rng(self.cfg.seed)
        lot = np.select(
            [cols.price <= 250, cols.price <= 1_000, cols.price <= 10_000], [100, 40, 10], 1
        )
        return {
            "bid_ticks": rng.choice([1, 1, 1, 2, 3], size=n),
            "ask_ticks": rng.choice([1, 1, 1, 2, 3], size=n),
            "bid_size": lot * rng.geometric(0.3, size=n),
            "ask_size": lot * rng.geometric(0.3, size=n),
            "bid_x": rng.choice([1, 4, 8, 11, 12, 15, 19], size=n),
            "ask_x": rng.choice([1, 4, 8, 11, 12, 15, 19], size=n),
        }

    def _quotes(self, gid: I8, ts: I8) -> list[dict[str, Any]]:
        rows, _ = self._rows(gid)
        m = self._spread_model
        cols = self.tape.columns
        p = cols.price[rows]
        bid = np.round(np.maximum(0.01, p - 0.01 * m["bid_ticks"][rows]), 2)
        ask = np.round(p + 0.01 * m["ask_ticks"][rows], 2)
        out = []
        for t, b, a, bs, az, bx, ax, sq in zip(
            ts.tolist(), bid.tolist(), ask.tolist(), m["bid_size"][rows].tolist(),
            m["ask_size"][rows].tolist(), m["bid_x"][rows].tolist(), m["ask_x"][rows].tolist(),
            cols.seq[rows].tolist(), strict=True,
        ):  # fmt: skip
            out.append({
                "ask_exchange": ax, "ask_price": a, "ask_size": az, "bid_exchange": bx,
                "bid_price": b, "bid_size": bs, "participant_timestamp": t - 50_000,
                "sequence_number": sq, "sip_timestamp": t, "tape": 3,
            })  # fmt: skip
        return out

    def _last_trade(self, sym: str, rid: str) -> tuple[int, dict[str, Any]]:
        ts, gid = self.published.arrays(sym)
        if len(ts) == 0:
            return 404, {"status": "NOT_FOUND", "request_id": rid, "message": "Data not found."}
        r = self._trade_results(gid[-1:], ts[-1:])[0]
        res: dict[str, Any] = {
            "T": sym, "i": r["id"], "p": r["price"], "q": r["sequence_number"], "s": r["size"],
            "t": r["sip_timestamp"], "x": r["exchange"], "y": r["participant_timestamp"],
            "z": r.get("tape"),
        }  # fmt: skip
        if r.get("conditions"):
            res["c"] = r["conditions"]
        return 200, {"request_id": rid, "status": "OK", "results": res}

    def _aggs(
        self, sym: str, mult: str, span: str, frm: str, to: str, q: dict[str, str], rid: str
    ) -> dict[str, Any]:
        width = _int_param("multiplier", mult, 1, 1_000_000)
        bucket = _bucketer(span, width)
        if "cursor" in q:
            st = self._uncursor(q["cursor"])
        else:
            st = {
                "from": _agg_bound("from", frm, end=False), "to": _agg_bound("to", to, end=True),
                "sort": _check_choice("sort", q.get("sort", "asc"), ("asc", "desc")),
                "limit": _int_param("limit", q.get("limit", 5000), 1, MAX_LIMIT),
            }  # fmt: skip
        _check_choice("adjusted", q.get("adjusted", "true"), ("true", "false"))
        ts, gid = self.published.arrays(sym)
        rows, _ = self._rows(gid)
        bars = _bars(self.tape.columns, ts, rows, bucket, int(st["from"]), int(st["to"]))
        if st["sort"] == "desc":
            bars.reverse()
        after = st.get("after")
        if after is not None:
            bars = [b for b in bars if (b["t"] > after if st["sort"] == "asc" else b["t"] < after)]
        page = bars[: int(st["limit"])]
        body: dict[str, Any] = {
            "ticker": sym, "queryCount": len(page), "resultsCount": len(page),
            "adjusted": q.get("adjusted", "true") == "true", "status": "OK", "request_id": rid,
        }  # fmt: skip
        if page:
            body["results"] = page
        if len(bars) > len(page):
            nxt = {**st, "after": page[-1]["t"]}
            body["next_url"] = (
                f"{self.rest_url}/v2/aggs/ticker/{quote(sym)}/range/{mult}/{span}/{frm}/{to}"
                f"?cursor={self._cursor(nxt)}"
            )
        return body

    def _prev_close(self, sym: str, q: dict[str, str], rid: str) -> dict[str, Any]:
        """The day bar of the tape's own session (the fake serves one day: the previous one)."""
        _check_choice("adjusted", q.get("adjusted", "true"), ("true", "false"))
        cols = self.tape.columns
        results: list[dict[str, Any]] = []
        if sym in self.tape.symbols:
            rows = np.flatnonzero((cols.sym == self.tape.symbols.index(sym)) & ~cols.duplicate)
            bars = _bars(cols, cols.ts[rows], rows, _bucketer("day", 1), 0, _MAX_MS)
            results = [{"T": sym, **b} for b in bars[-1:]]
        body: dict[str, Any] = {
            "ticker": sym, "queryCount": len(results), "resultsCount": len(results),
            "adjusted": q.get("adjusted", "true") == "true", "status": "OK", "request_id": rid,
        }  # fmt: skip
        if results:
            body["results"] = results
        return body

    def _conditions(self, q: dict[str, str], rid: str) -> dict[str, Any]:
        if "cursor" in q:
            st = self._uncursor(q["cursor"])
        else:
            st = {
                "off": 0,
                "limit": min(_int_param("limit", q.get("limit", 10), 1, 1000),
                             self.cfg.rest_page_limit_cap),
                **{k: q[k] for k in ("asset_class", "data_type") if k in q},
            }  # fmt: skip
        full = [
            r
            for r in bundled_conditions_response()["results"]
            if ("asset_class" not in st or r.get("asset_class") == st["asset_class"])
            and ("data_type" not in st or st["data_type"] in (r.get("data_types") or ()))
        ]
        off, limit = int(st["off"]), int(st["limit"])
        page = full[off : off + limit]
        body: dict[str, Any] = {
            "results": page,
            "status": "OK",
            "request_id": rid,
            "count": len(page),
        }
        if off + limit < len(full):
            cur = self._cursor({**st, "off": off + limit})
            body["next_url"] = f"{self.rest_url}/v3/reference/conditions?cursor={cur}"
        return body


# ---------------------------------------------------------------------------------- helpers
def _loop_id(trade_id: str, loop: int) -> str:
    return f"{trade_id}-{loop}"


def _check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise BadRequestError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def _int_param(name: str, value: object, lo: int, hi: int) -> int:
    try:
        v = int(str(value))
    except ValueError:
        raise BadRequestError(f"{name}: expected an integer, got {value!r}") from None
    if not lo <= v <= hi:
        raise BadRequestError(f"{name}: must be between {lo} and {hi}, got {v}")
    return v


def _ny_day_ns(day: dt.date) -> tuple[int, int]:
    """[00:00, next 00:00) America/New_York of ``day``, in UTC ns."""
    a = dt.datetime.combine(day, dt.time(), tzinfo=NY)
    b = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=NY)
    return int(a.timestamp()) * 1_000_000_000, int(b.timestamp()) * 1_000_000_000


def parse_timestamp(name: str, value: str) -> tuple[int, int]:
    """A ``timestamp`` parameter as the half-open ns range it names: nanoseconds since the epoch
    (one instant) or a date ``YYYY-MM-DD`` (that New York trading day: 00:00 to 00:00 ET)."""
    v = str(value).strip()
    if v.isdigit():
        return int(v), int(v) + 1
    try:
        day = dt.date.fromisoformat(v) if len(v) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise BadRequestError(
            f"{name}: expected a date YYYY-MM-DD or nanoseconds since the epoch, got {v!r}"
        )
    return _ny_day_ns(day)


def _time_bounds(ts: I8, state: Mapping[str, Any]) -> tuple[int, int]:
    """The [lo, hi) index range of sorted ``ts`` selected by the ``timestamp*`` filters."""
    lo, hi = 0, len(ts)

    def left(x: int) -> int:
        return int(np.searchsorted(ts, x, "left"))

    for name, val in state.items():
        if not name.startswith("timestamp"):
            continue
        start, end = parse_timestamp(name, val)
        op = name.partition(".")[2]
        if op == "":
            lo, hi = max(lo, left(start)), min(hi, left(end))
        elif op == "gte":
            lo = max(lo, left(start))
        elif op == "gt":
            lo = max(lo, left(end))
        elif op == "lte":
            hi = min(hi, left(end))
        elif op == "lt":
            hi = min(hi, left(start))
        else:
            raise BadRequestError(f"{name}: unknown filter (use timestamp.gte/gt/lte/lt)")
    return lo, hi


def _position(ts: I8, gid: I8, t: int, g: int, side: Literal["left", "right"]) -> int:
    """Index of (t, g) in the (ts, gid)-sorted arrays."""
    a, b = int(np.searchsorted(ts, t, "left")), int(np.searchsorted(ts, t, "right"))
    return a + int(np.searchsorted(gid[a:b], g, side))


def _agg_bound(name: str, value: str, *, end: bool) -> int:
    """An aggregates ``from``/``to``: ms since the epoch, or a date (its New York day), in ms."""
    if value.isdigit():
        return int(value)
    try:
        day = dt.date.fromisoformat(value) if len(value) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise BadRequestError(f"{name}: expected a date YYYY-MM-DD or milliseconds, got {value!r}")
    a, b = _ny_day_ns(day)
    return (b // 1_000_000 - 1) if end else a // 1_000_000


def _bucketer(span: str, mult: int) -> Callable[[I8], I8]:
    """Bar start (ns) of each timestamp: fixed widths in UTC, days from 00:00 New York."""
    if span in _SPAN_NS:
        w = _SPAN_NS[span] * mult
        return lambda ts: ts // w * w
    if span == "day" and mult == 1:

        def day_start(ts: I8) -> I8:
            local = pd.DatetimeIndex(pd.to_datetime(ts, utc=True)).tz_convert(NY).normalize()
            return np.asarray(local.asi8, dtype=np.int64)

        return day_start
    raise BadRequestError(
        f"timespan: {mult}/{span} is not served by the fake (second, minute, hour: any multiplier;"
        " day: 1)"
    )


def _bars(
    cols: TapeColumns, ts: I8, rows: I8, bucket: Callable[[I8], I8], from_ms: int, to_ms: int
) -> list[dict[str, Any]]:
    """Bars of the trades ``rows`` (served at ``ts``) by the consolidated update rules — the
    features library's minute aggregation over buckets of any width — with start ``t`` (ms) in
    [from_ms, to_ms], ascending. Only buckets with a last-eligible trade make a bar."""
    if len(ts) == 0:
        return []
    starts = bucket(ts)
    keep = (starts >= from_ms * 1_000_000) & (starts <= to_ms * 1_000_000)
    if not keep.any():
        return []
    ts, rows, starts = ts[keep], rows[keep], starts[keep]
    order = np.lexsort((cols.seq[rows], ts))
    ts, rows, starts = ts[order], rows[order], starts[order]
    uniq = np.unique(starts)
    # Bucket k becomes "minute" k: the library's bar code then groups by bucket as it is.
    k = np.searchsorted(uniq, starts).astype(np.int64)
    t = TradeArrays(
        sym=np.zeros(len(ts), np.int32), ts=k * NS_PER_MINUTE, seq=cols.seq[rows],
        price=cols.price[rows], size=cols.size[rows], flags=cols.flags[rows],
        session=np.zeros(len(ts), np.int64),
    )  # fmt: skip
    m = aggregate_minutes(t, presorted=True)
    m = m.take(m.has_bar)
    first = uniq[m.ts // NS_PER_MINUTE - 1] // 1_000_000
    out = []
    for t0, o, h, lo, c, v, n, pv, vv in zip(
        first.tolist(), m.open.tolist(), m.high.tolist(), m.low.tolist(), m.close.tolist(),
        m.volume.tolist(), m.trade_count.tolist(), m.vwap_pv.tolist(), m.vwap_v.tolist(),
        strict=True,
    ):  # fmt: skip
        bar = {"v": v, "o": o, "c": c, "h": h, "l": lo, "t": t0, "n": n}
        if vv > 0:
            bar["vw"] = round(pv / vv, 4)
        out.append(bar)
    return out


# ---------------------------------------------------------------------------------- entry points
def build_tape(
    symbols: Sequence[str],
    *,
    date: dt.date | None = None,
    seed: int = 7,
    trades_per_day: int = 50_000,
    recorded: Path | None = None,
) -> Tape:
    """The tape a standalone server plays: a recorded file, or a simulated session."""
    if recorded is not None:
        return RecordedTape(recorded)
    cfg = SimConfig(
        seed=seed, symbols=tuple(symbols), date=date or SimConfig.date,
        trades_per_day=trades_per_day,
    )  # fmt: skip
    return SimTape(simulate(cfg))


async def serve_forever(
    tape: Tape,
    cfg: FakeConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    port_file: Path | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve until cancelled; the bound port is written to ``port_file`` (atomically) once
    the server listens."""
    srv = FakePolygonServer(tape, cfg, host, port)
    await srv.start_async()
    if port_file:
        tmp = port_file.with_name(port_file.name + ".tmp")
        tmp.write_text(str(srv.port))
        tmp.replace(port_file)
    mode = "live (restamped)" if cfg.restamp else "history"
    announce(
        f"fake polygon: ws {srv.ws_url}  rest {srv.rest_url}  trades {len(tape)}  mode {mode}  "
        f"on_end {cfg.on_end}"
    )
    try:
        await asyncio.Event().wait()
    finally:
        await srv.stop_async()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m signalstack.marketdata.fake_polygon``: serve a simulated market until killed."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--symbols", default="AAPL,MSFT,NVDA,AMZN,TSLA,SPY")
    ap.add_argument("--date", type=dt.date.fromisoformat, default=None)
    ap.add_argument("--trades-per-day", type=int, default=50_000)
    ap.add_argument("--recorded", type=Path, default=None, help="a file of recorded WS frames")
    ap.add_argument("--rate", type=float, default=100_000.0, help="trades/s; 0 = as fast as read")
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--key", default="test-key")
    ap.add_argument("--no-restamp", action="store_true", help="history mode")
    ap.add_argument("--loop", action="store_true", help="replay the tape when it ends")
    ap.add_argument("--preencode", action="store_true", help="benchmark mode (with --no-restamp)")
    ap.add_argument("--drop-every", type=int, default=None)
    ap.add_argument("--malformed-every", type=int, default=None)
    ap.add_argument("--port-file", type=Path, default=None, help="write the bound port here")
    a = ap.parse_args(argv)
    syms = [s.strip() for s in a.symbols.split(",") if s.strip()]
    tape = build_tape(
        syms, date=a.date, seed=a.seed, trades_per_day=a.trades_per_day, recorded=a.recorded
    )
    cfg = FakeConfig(
        api_keys=frozenset({a.key}), batch=a.batch, rate=a.rate or None, restamp=not a.no_restamp,
        preencode=a.preencode, on_end="loop" if a.loop else "stop",
        drop_every=a.drop_every, malformed_every=a.malformed_every,
    )  # fmt: skip
    asyncio.run(serve_forever(tape, cfg, a.host, a.port, a.port_file))


if __name__ == "__main__":
    main()
