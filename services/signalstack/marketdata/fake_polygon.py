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
import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from signalstack.features.sessions import NS_PER_MINUTE
from signalstack.logs import get_logger
from signalstack.marketdata.fake_query import (
    MAX_MS,
    BadRequestError,
    bucketer,
    loop_id,
)
from signalstack.marketdata.fake_query import bars as build_bars
from signalstack.marketdata.fake_rest import MAX_LIMIT, FakeRestApi, Published
from signalstack.marketdata.fake_tape import RecordedTape, SimTape, Tape, TapeColumns, build_tape

log = get_logger(__name__)

BAD_FRAME_KINDS: Final = (
    "bad_json",
    "missing_field",
    "non_positive_price",
    "non_positive_size",
    "unknown_symbol",
    "clock_skew",
)
SLOW_CONSUMER_TEXT: Final = (
    "Your connection was closed because you are not consuming messages fast enough: the "
    "server-side buffer for this connection is full."
)
CLOSE_TRY_AGAIN_LATER: Final = 1013
OnEnd = Literal["stop", "loop"]
LIVE_KEEP_MARGIN_NS: Final = 600 * 1_000_000_000  # > any print's reporting delay
SERVED_CHANNELS: Final = ("T", "AM")  # trades, and minute aggregates built from them

I8 = npt.NDArray[np.int64]


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
    # With drop_every: while no subscriber listens and drops remain, the replay holds (its pacing
    # clock restarts when one is back), so a run of forced drops fits in the tape whatever the
    # client's reconnect costs. Frames in flight at each abort are still lost.
    hold_while_away: bool = False
    malformed_every: int | None = None  # inject one invalid frame after every N data frames
    malformed_kinds: tuple[str, ...] = BAD_FRAME_KINDS
    refuse_auth: bool = False
    max_connections: int = 1  # concurrent authenticated connections per key
    reject_logins: int = 0  # answer max_connections to the first K logins
    rest_429_every: int | None = None
    rest_503_every: int | None = None
    retry_after: str | None = "0"
    rest_page_limit_cap: int = MAX_LIMIT
    # Hold the Nth ``/v3/trades`` request (1-based, pages by cursor count) unanswered until
    # ``release_rest()``; ``rest_held`` (a threading.Event) is set when it arrives. Lets a test
    # act (kill the client, start another) at a known point of a run, whatever the load.
    rest_hold_trades: int | None = None
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
        self.published = Published(tape.symbols)
        self.position = 0  # next tape row to publish
        self.loop_number = 0  # completed passes over the tape
        self.ended = False  # the tape ended and does not loop
        self.done = asyncio.Event()  # set when the first pass over the tape is published
        self.injected: Counter[str] = Counter()
        self.drops = 0
        self.slow_consumers = 0
        self.logins = 0
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
        self.rest = FakeRestApi(tape, self.cfg, self.published, lambda: self.rest_url)
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

    @property
    def rest_requests(self) -> int:
        return self.rest.requests

    @property
    def rest_throttled(self) -> int:
        return self.rest.throttled

    @property
    def rest_held(self) -> threading.Event:
        """Set once the request ``rest_hold_trades`` names has arrived (and is being held)."""
        return self.rest.held

    def release_rest(self) -> None:
        """Answer the held ``/v3/trades`` request (no-op when none is or will be held)."""
        self.rest.release.set()

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
            process_request=self.rest.process_request,
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
        self.release_rest()  # a held request must not keep the server from closing
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
        pass_starts: list[int] = []
        while True:
            pass_starts = [*pass_starts[-1:], time.time_ns()]
            if cfg.restamp and len(pass_starts) == 2:
                # live and looping: REST keeps the previous pass and this one, not every pass
                # (late prints are stamped up to their reporting delay before their pass)
                self.published.drop_before(pass_starts[0] - LIVE_KEEP_MARGIN_NS)
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
            if cfg.hold_while_away and self._drops_left():
                await self._hold_for_listener()
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
                            e["i"] = loop_id(e["i"], loop)
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

    def _drops_left(self) -> bool:
        cfg = self.cfg
        return bool(cfg.drop_every) and (cfg.max_drops is None or self.drops < cfg.max_drops)

    async def _hold_for_listener(self) -> None:
        """``hold_while_away``: wait for a subscriber, then pace from here (no catch-up burst)."""
        if any(c.listening() for c in self.clients):
            return
        while not any(c.listening() for c in self.clients):
            await asyncio.sleep(0.005)
        if self.cfg.rate:
            self._t0 = time.perf_counter() - self._sent_trades / self.cfg.rate

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
        minute = bucketer("minute", 1)
        events: list[dict[str, Any]] = []
        for sym in sorted(wanted):
            sel = cols.sym[rows] == self.tape.symbols.index(sym)
            bars = build_bars(cols, ts[sel], rows[sel], minute, 0, MAX_MS)
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


# ---------------------------------------------------------------------------------- entry points
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


__all__ = [
    "BAD_FRAME_KINDS",
    "BadRequestError",
    "FakeConfig",
    "FakePolygonServer",
    "RecordedTape",
    "SimTape",
    "Tape",
    "TapeColumns",
    "build_tape",
    "main",
    "serve_forever",
]

if __name__ == "__main__":
    main()
