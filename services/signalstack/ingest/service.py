"""The ingest service: Polygon WebSocket → validate → Kafka ``market.trades`` (bad input → DLQ).

Tasks on one event loop:

- the WebSocket client reads frames into a bounded queue (never parses);
- the processor takes frames off the queue, parses them (orjson), dispatches on ``ev``, validates
  each trade (the rules of :func:`validate_trade`), drops duplicates by identity (symbol,
  exchange, trade id) and produces to Kafka (key symbol, idempotent, acks=all, lz4); anything
  invalid goes to the DLQ with the raw input and the reason. When the producer queue is full it
  waits for room without blocking the loop (the reader's bounded queue then pushes back). On a
  reconnect marker it waits for the new subscription, then fills the gap from REST
  ``/v3/trades`` (last trade seen per symbol − lookback → now) before it goes on with the new
  stream;

Threads beside the loop:

- the delivery thread polls the producer on its own cadence (``delivery_poll_s``), fed or idle:
  it counts acknowledgements, re-produces a message whose delivery failed for a transient reason
  (a trade that cannot be delivered at all goes to the DLQ with the reason ``delivery_failed``)
  and watches the broker for readiness (:mod:`signalstack.ingest.broker_health`);
- the HTTP thread for ``/metrics``, ``/health/live`` and ``/health/ready``
  (:class:`signalstack.observability.HealthServer`, the one every service uses).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Producer

from signalstack.config import IngestSettings, Settings
from signalstack.ingest.broker_health import BrokerHealth
from signalstack.ingest.dedup import DedupWindow
from signalstack.ingest.dlq import dlq_record
from signalstack.ingest.fastpath import (
    FastPathRefused,
    TradeRecord,
    WsTrade,
    decode_trade_frame,
    encode_records,
)
from signalstack.ingest.kafka_io import ensure_topics, producer_config, trade_topics
from signalstack.ingest.metrics import IngestMetrics
from signalstack.ingest.resume import read_topic_tail
from signalstack.logs import get_logger
from signalstack.marketdata.conditions import ConditionTable
from signalstack.marketdata.errors import PolygonAuthError
from signalstack.marketdata.polygon_rest import PolygonRestClient, load_conditions
from signalstack.marketdata.polygon_ws import Connected, PolygonWebSocketClient
from signalstack.marketdata.wire import (
    REST_SOURCE,
    WS_SOURCE,
    rest_trade_to_event,
    ws_trade_to_event,
)
from signalstack.observability import HealthServer
from signalstack.process import tune_gc
from signalstack.schemas.trade import (
    NS_PER_MS,
    NS_PER_S,
    SCHEMA_VERSION,
    InvalidTradeError,
    RejectReason,
    validate_trade,
)

log = get_logger(__name__)
INTERNAL_ERROR = "internal_error"
DELIVERY_FAILED = "delivery_failed"  # DLQ reason: Kafka refused the trade for good
# Delivery errors worth another produce: the broker may take the message later.
_TRANSIENT = frozenset(
    {
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
    }
)
_INF = float("inf")
_TOPIC_CHECK_TIMEOUT_S = 10.0  # one attempt at the start-up topic check; well under liveness
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_MAX_MS = _I64_MAX // NS_PER_MS  # a millisecond stamp whose ns value still fits int64


def _all_ints(values: list[Any]) -> bool:
    for v in values:  # noqa: SIM110 - a plain loop beats all(genexpr) on the hot path
        if type(v) is not int or not _I64_MIN <= v <= _I64_MAX:
            return False
    return True


@dataclass
class IngestStats:
    frames: int = 0
    trades_in: int = 0
    produced: int = 0
    acked: int = 0
    rejected: int = 0
    duplicates: int = 0
    gap_filled: int = 0
    gap_fills: int = 0


class _Observer:
    def __init__(self, svc: IngestService) -> None:
        self.svc = svc

    def on_reconnect(self) -> None:
        self.svc.metrics.reconnects.inc()

    def on_backoff(self, seconds: float, max_connections: bool) -> None:
        m = self.svc.metrics
        m.backoff_seconds.inc(seconds)
        if max_connections:
            m.max_connections.inc()

    def on_connected(self, connected: bool) -> None:
        self.svc.subscribed = connected
        self.svc.metrics.connected.set(1 if connected else 0)


class IngestService:
    def __init__(
        self,
        settings: Settings,
        ingest: IngestSettings | None = None,
        *,
        symbols: Sequence[str] | None = None,
        metrics: IngestMetrics | None = None,
        producer_overrides: Mapping[str, Any] | None = None,
        ws_options: Mapping[str, Any] | None = None,
        rest_options: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._clock = clock  # liveness (heartbeat): injected in tests
        self.cfg = ingest or settings.ingest
        self.symbols = tuple(symbols or settings.market.symbols)
        self.symbol_set = frozenset(self.symbols)
        self.metrics = metrics or IngestMetrics()
        self.stats = IngestStats()
        self._producer_overrides = dict(producer_overrides or {})
        self._ws_options = dict(ws_options or {})
        self._rest_options = dict(rest_options or {})
        self.trades_topic = settings.kafka.trades_topic
        self.dlq_topic = settings.kafka.dlq_topic
        self.dedup = DedupWindow(int(self.cfg.dedup_horizon_s * NS_PER_S))
        self.last_seen: dict[str, int] = {}
        self.first_connected_ns: int | None = None
        self.conditions: ConditionTable | None = None
        self.subscribed = False
        self.topics_ready = False
        self.heartbeat = clock()
        self.health: HealthServer | None = None
        self.queue: asyncio.Queue[Any] = asyncio.Queue(self.cfg.queue_frames)
        self._producer: Producer | None = None
        self._rest: PolygonRestClient | None = None
        self._skew_ns = int(self.cfg.max_skew_s * NS_PER_S) if self.cfg.max_skew_s else None
        self._newest_ts = 0
        self._observe_latency = self.metrics.produce_latency.observe
        self._queue_max = 1_000_000
        self._acks_reported = 0
        self._sent = self._dlq_sent = self._failed = 0
        self._errors_only = self.cfg.delivery_reports == "errors"
        self._pending_frames: collections.deque[tuple[float, int]] = collections.deque()
        self.broker = BrokerHealth(self.cfg.delivery_stall_s)
        # Messages the producer queue could not take (loop thread): produced when there is room.
        self._backlog: collections.deque[tuple[str, bytes, bytes | None, bool]] = (
            collections.deque()
        )
        # Failed deliveries (delivery thread): re-produced or sent to the DLQ on that thread.
        self._undelivered: collections.deque[tuple[str, bytes, bytes | None, KafkaError]] = (
            collections.deque()
        )
        self._resent = self._resent_dlq = 0  # written by the delivery thread only
        self._failed_logged = 0
        self._poll_stop = threading.Event()
        self._resume_from: dict[str, int] | None = None  # gap fill at the first connection
        self._poller: threading.Thread | None = None

    # ------------------------------------------------------------------ health
    def live(self) -> tuple[bool, str]:
        idle = self._clock() - self.heartbeat
        if idle > self.cfg.stale_after_s:
            return False, f"processor silent for {idle:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if not self.topics_ready:
            return False, "kafka topics not checked yet"
        if not self.subscribed:
            return False, "not subscribed to the feed"
        return self.broker.check()

    # ------------------------------------------------------------------ kafka
    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        """Default callback (market.trades): count acks, sample the latency 1 in 8. With
        ``delivery_reports="errors"`` librdkafka calls it for failures only."""
        if err is not None:
            self._delivery_failed(err, msg)
            return
        st = self.stats
        st.acked += 1
        if not st.acked & 7:
            lat = msg.latency()
            if lat is not None:
                self._observe_latency(lat)

    def _delivery_failed(self, err: KafkaError, msg: Any) -> None:
        """On the delivery thread: count it and keep it for :meth:`_redeliver`."""
        self._failed += 1
        self.metrics.delivery_errors.inc()
        self._undelivered.append((msg.topic(), msg.value(), msg.key(), err))

    def _redeliver(self) -> None:
        """On the delivery thread: produce again what failed for a transient reason; a trade
        Kafka refuses for good goes to the DLQ (reason ``delivery_failed``), so nothing is only
        logged. Messages the full queue cannot take yet wait for the next round."""
        p = self._producer
        und = self._undelivered
        if self._failed > self._failed_logged:  # a line per round, not per message
            log.warning("kafka_delivery_failed", messages=self._failed - self._failed_logged,
                        error=str(und[-1][3]) if und else None)  # fmt: skip
            self._failed_logged = self._failed
        while p is not None and und:
            topic, value, key, err = und[0]
            dlq = topic == self.dlq_topic
            try:
                if err.code() in _TRANSIENT or err.retriable():
                    cb = self._on_dlq_delivery if dlq else self._on_delivery
                    p.produce(topic, value, key, on_delivery=cb)
                    if dlq:
                        self._resent_dlq += 1
                    else:
                        self._resent += 1
                    self.metrics.redelivered.inc()
                elif not dlq:
                    sym = key.decode(errors="replace") if key else None
                    rec = dlq_record(
                        value, DELIVERY_FAILED, str(err), WS_SOURCE, time.time_ns(), sym
                    )
                    p.produce(self.dlq_topic, orjson.dumps(rec), key,
                              on_delivery=self._on_dlq_delivery)  # fmt: skip
                    self._resent_dlq += 1
                    self.metrics.rejected.labels(DELIVERY_FAILED).inc()
                else:
                    log.error("kafka_dlq_delivery_lost", error=str(err), raw=value[:200])
            except BufferError:
                return
            und.popleft()

    def _acked_all(self, p: Producer) -> tuple[int, int]:
        """Messages acknowledged so far (trades and DLQ records) from the queue's length, and
        that length.

        The loop thread produces while this runs on the delivery thread: the counters are read
        BEFORE the queue's length. A message produced between the two reads is then in the
        queue but not yet counted, and the result is an underestimate (made good by the next
        round). The other order would count it as produced and not queued, i.e. acknowledged,
        and ``stats.acked`` (a max) would keep the over-report."""
        produced = self._sent + self._dlq_sent + self._resent + self._resent_dlq
        failed = self._failed
        queued = len(p)
        return produced - queued - failed, queued

    def _poll_deliveries(self) -> None:
        """The delivery thread: serve delivery reports on their own cadence, fed or idle."""
        p = self._producer
        assert p is not None
        interval = self.cfg.delivery_poll_s
        while not self._poll_stop.is_set():
            try:
                p.poll(interval)
                self._redeliver()
                self._report_acks()
            except Exception:  # the thread must outlive any one bad round
                log.exception("ingest_delivery_thread_error")
                self._poll_stop.wait(interval)

    def _report_acks(self) -> None:
        """Update the ack counter in bulk (on the delivery thread). In ``errors`` mode acks are
        derived exactly from the producer's queue: a message leaves it only when acknowledged or
        failed (failures are reported); the latency is then observed per frame (its last
        message acked)."""
        p = self._producer
        if p is None:
            return
        acked_all, queued = self._acked_all(p)  # counters, then the queue: see there
        self.broker.observe(queued, acked_all)
        if self._errors_only:
            self.stats.acked = max(self.stats.acked, acked_all - self._dlq_sent - self._resent_dlq)
            pend = self._pending_frames
            if pend:
                now = time.perf_counter()
                observe = self._observe_latency
                while pend and pend[0][1] <= acked_all:
                    observe(now - pend.popleft()[0])
        delta = self.stats.acked - self._acks_reported
        if delta:
            self.metrics.messages_out.inc(delta)
            self._acks_reported += delta

    def _on_dlq_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self._delivery_failed(err, msg)
        else:
            self.metrics.dlq_out.inc()

    def _send(self, topic: str, value: bytes, key: bytes | None, dlq: bool) -> None:
        """Hand one message to the producer and count it; raises BufferError when its local
        queue is full (nothing is counted then)."""
        p = self._producer
        assert p is not None
        if dlq:
            p.produce(topic, value, key, on_delivery=self._on_dlq_delivery)
            self._dlq_sent += 1
        else:
            p.produce(topic, value, key)
            self._sent += 1

    def _produce(self, topic: str, value: bytes, key: bytes | None, dlq: bool = False) -> None:
        """Produce one message; if the queue is full it waits in the backlog, which the
        processor drains (:meth:`_wait_for_room`) before it takes the next frame."""
        if not self._backlog:
            try:
                self._send(topic, value, key, dlq)
                return
            except BufferError:
                pass
        self._backlog.append((topic, value, key, dlq))

    def _drain_backlog(self) -> None:
        b = self._backlog
        while b:
            try:
                self._send(*b[0])
            except BufferError:
                return
            b.popleft()

    def has_room(self) -> bool:
        p = self._producer
        return not self._backlog and (p is None or len(p) <= self._queue_max)

    async def _wait_for_room(self) -> None:
        """Back-pressure without blocking the loop: the health server, the reader and the
        delivery thread go on while the broker catches up (or comes back)."""
        started = self._clock()
        warned = False
        while True:
            self._drain_backlog()
            if self.has_room():
                break
            now = self.heartbeat = self._clock()  # waiting on the broker is not a hang
            if not warned and now - started > 1.0:
                warned = True
                log.warning("kafka_queue_full", queued=len(self._producer or ()))
            await asyncio.sleep(0.05)
        if warned:
            log.info("kafka_queue_has_room", waited_s=round(self._clock() - started, 1))

    def _produce_batch(self, batch: list[dict[str, Any]]) -> None:
        """One ``produce_batch`` call per frame (keys still pick the partition); messages the
        local queue could not take go to the backlog, in order."""
        p = self._producer
        assert p is not None
        if self._backlog:  # keep the order: nothing may overtake what already waits
            for m in batch:
                self._produce(self.trades_topic, m["value"], m["key"].encode())
            return
        n = p.produce_batch(self.trades_topic, batch)
        self._sent += n
        if self._errors_only:
            self._pending_frames.append((time.perf_counter(), self._sent + self._dlq_sent))
        if n < len(batch):
            for m in batch:
                if m.get("_error") is not None:
                    self._produce(self.trades_topic, m["value"], m["key"].encode())

    def _reject(
        self, raw: str | bytes, reason: str, detail: str, source: str, symbol: Any = None
    ) -> None:
        sym = symbol if isinstance(symbol, str) and symbol else None
        rec = dlq_record(raw, reason, detail, source, time.time_ns(), sym)
        value, key = orjson.dumps(rec), (sym.encode() if sym else None)
        self._produce(self.dlq_topic, value, key, dlq=True)
        self.metrics.rejected.labels(reason).inc()
        self.stats.rejected += 1

    # ------------------------------------------------------------------ parsing
    def process_frame(self, frame: str | bytes) -> None:
        """Parse one WebSocket frame and route every event; never raises on bad input.

        The fast path (:mod:`signalstack.ingest.fastpath`) takes a frame made only of trades that
        pass its compiled checks, a strict subset of :func:`validate_trade`'s rules. Any other
        frame goes through the general path, event by event, where whatever the fast checks did
        not settle goes through ``validate_trade`` for the exact rejection reason, so the rules
        live in one place.
        """
        self.stats.frames += 1
        try:
            trades = decode_trade_frame(frame)
        except FastPathRefused:
            trades = None
        if trades is not None and self._process_fast(trades):
            self.metrics.frames_fast.inc()
        else:
            self.metrics.frames_general.inc()
            self._process_general(frame)

    def _process_fast(self, trades: list[WsTrade]) -> bool:
        """Route a frame of well-formed trades. Returns False, having changed nothing, if one of
        them is for an unknown symbol or off the wall clock (the general path rejects it)."""
        now = time.time_ns()
        symbols = self.symbol_set
        skew = self._skew_ns
        lo, hi = (
            (0, _MAX_MS) if skew is None else ((now - skew) // NS_PER_MS, (now + skew) // NS_PER_MS)
        )
        cur, prev = self.dedup.current, self.dedup.previous
        last_seen = self.last_seen
        records: list[TradeRecord] = []
        add = records.append
        n_dup = 0
        for e in trades:
            sym = e.sym
            t = e.t
            if sym not in symbols or not lo < t < hi:
                for r in records:  # undo this frame's identities: the general path redoes it
                    cur.discard((r.symbol, r.exchange, r.trade_id))
                return False
            key = (sym, e.x, e.i)
            if key in cur or key in prev:
                n_dup += 1
                continue
            cur.add(key)
            tn = t * NS_PER_MS
            if tn > last_seen.get(sym, 0):
                last_seen[sym] = tn
            c = e.c
            add(TradeRecord(SCHEMA_VERSION, sym, tn, e.p, e.s, e.x, [] if c is None else c,
                            e.i, e.q, e.z, WS_SOURCE, now))  # fmt: skip
        n_unknown = 0
        if self.conditions is not None:
            known = self.conditions.rules
            n_unknown = sum(code not in known for r in records for code in r.conditions)
        if records:
            values = encode_records(records)
            self._produce_batch(
                [{"value": v, "key": r.symbol} for v, r in zip(values, records, strict=True)]
            )
            newest = max(self._newest_ts, max(r.ts_event for r in records))
            self._newest_ts = newest
            self.dedup.advance(newest)
        self._account(len(trades), len(records), n_dup, n_unknown, now)
        return True

    def _account(self, n_in: int, n_out: int, n_dup: int, n_unknown: int, now: int) -> None:
        st, m = self.stats, self.metrics
        if n_in:
            m.messages_in.labels(WS_SOURCE).inc(n_in)
            st.trades_in += n_in
        if n_dup:
            m.duplicates.inc(n_dup)
            st.duplicates += n_dup
        if n_unknown:
            m.unknown_conditions.inc(n_unknown)
        st.produced += n_out
        if self._newest_ts:
            m.last_event_lag.set((now - self._newest_ts) / NS_PER_S)

    def _process_general(self, frame: str | bytes) -> None:
        """Any frame: parse with orjson, dispatch on ``ev``, validate each trade."""
        try:
            events = orjson.loads(frame)
        except orjson.JSONDecodeError as err:
            self._reject(frame, RejectReason.BAD_JSON.value, str(err), WS_SOURCE)
            return
        if type(events) is not list:
            reason = RejectReason.NOT_AN_OBJECT.value
            self._reject(frame, reason, "frame is not a JSON array", WS_SOURCE)
            return
        now = time.time_ns()
        now_ms = now // NS_PER_MS
        symbols = self.symbol_set
        skew = self._skew_ns
        skew_ms = skew // NS_PER_MS if skew is not None else None
        cur, prev = self.dedup.current, self.dedup.previous
        last_seen = self.last_seen
        batch: list[dict[str, Any]] = []
        add = batch.append
        dumps = orjson.dumps
        known = self.conditions.rules if self.conditions is not None else None
        n_in = n_out = n_dup = n_unknown = 0
        newest = self._newest_ts
        for ev in events:
            try:
                if type(ev) is not dict:
                    reason = RejectReason.NOT_AN_OBJECT.value
                    self._reject(dumps(ev), reason, "event is not an object", WS_SOURCE)
                    continue
                get = ev.get
                if get("ev") != "T":
                    self._other_event(get("ev"), ev)
                    continue
                n_in += 1
                z = get("z")
                c = get("c")
                try:
                    sym: str = ev["sym"]
                    t: int = ev["t"]
                    p = ev["p"]
                    sz = ev["s"]
                    x = ev["x"]
                    i = ev["i"]
                    q = ev["q"]
                    fast = (
                        type(t) is int
                        and 0 < t < _MAX_MS
                        and (type(p) is float or type(p) is int)
                        and 0 < p < _INF
                        and (type(sz) is int or type(sz) is float)
                        and 0 < sz < _INF
                        and type(x) is int
                        and _I64_MIN <= x <= _I64_MAX
                        and type(i) is str
                        and i != ""
                        and type(q) is int
                        and _I64_MIN <= q <= _I64_MAX
                        and (z is None or (type(z) is int and _I64_MIN <= z <= _I64_MAX))
                        and type(sym) is str
                        and sym in symbols
                        and (c is None or (type(c) is list and _all_ints(c)))
                        and (skew_ms is None or -skew_ms < t - now_ms < skew_ms)
                    )
                except KeyError:
                    fast = False
                if not fast:
                    rec = ws_trade_to_event(ev, now)
                    try:
                        te = validate_trade(rec, symbols=symbols, now_ns=now, max_skew_ns=skew)
                    except InvalidTradeError as err:
                        self._reject(dumps(ev), err.reason.value, err.detail, WS_SOURCE, get("sym"))
                        continue
                    # Valid but not in the fast shape (e.g. 12.0 for an integer): normalised.
                    sym, t, p, sz = te.symbol, te.ts_event // NS_PER_MS, te.price, te.size
                    x, i, q, z, c = (
                        te.exchange,
                        te.trade_id,
                        te.sequence,
                        te.tape,
                        list(te.conditions),
                    )
                key = (sym, x, i)
                if key in cur or key in prev:
                    n_dup += 1
                    continue
                cur.add(key)
                if c:
                    if known is not None:
                        for code in c:
                            if code not in known:
                                n_unknown += 1
                else:
                    c = []
                tn = t * NS_PER_MS
                if tn > last_seen.get(sym, 0):
                    last_seen[sym] = tn
                    if tn > newest:
                        newest = tn
                value = dumps(
                    {
                        "schema_version": SCHEMA_VERSION,
                        "symbol": sym,
                        "ts_event": tn,
                        "price": p,
                        "size": sz,
                        "exchange": x,
                        "conditions": c,
                        "trade_id": i,
                        "sequence": q,
                        "tape": z,
                        "source": WS_SOURCE,
                        "ts_ingest": now,
                    }
                )
                add({"value": value, "key": sym})
                n_out += 1
            except Exception as err:  # one bad event must never stop the service
                log.exception("ingest_event_failed")
                self._reject(dumps(ev, default=str), INTERNAL_ERROR, repr(err), WS_SOURCE)
        if batch:
            self._produce_batch(batch)
        self._newest_ts = newest
        if newest:
            self.dedup.advance(newest)
        self._account(n_in, n_out, n_dup, n_unknown, now)

    def _other_event(self, kind: Any, ev: dict[str, Any]) -> None:
        if kind == "status":
            status = ev.get("status")
            if status in ("success", "connected", "auth_success"):
                log.info("polygon_status", status=status, message=ev.get("message"))
            else:
                log.warning("polygon_status", status=status, message=ev.get("message"))
        elif isinstance(kind, str) and kind in ("Q", "A", "AM"):
            self.metrics.ignored_events.labels(kind).inc()
        else:
            why = RejectReason.MISSING_FIELD if kind is None else RejectReason.BAD_TYPE
            self._reject(orjson.dumps(ev), why.value, f"unknown ev {kind!r}", WS_SOURCE)

    def process_rest_trades(self, symbol: str, results: Sequence[Mapping[str, Any]]) -> int:
        """Gap-fill results: validate (no clock check: they are history), dedup, produce."""
        now = time.time_ns()
        new = dup = 0
        key = symbol.encode()
        known = self.dedup.known
        for r in results:
            # Most of a gap fill overlaps what was already seen: test the identity first.
            ident = (symbol, r.get("exchange"), r.get("id"))
            if known(ident):
                dup += 1
                continue
            rec = rest_trade_to_event(symbol, r, now)
            try:
                te = validate_trade(rec, symbols=self.symbol_set)
            except InvalidTradeError as err:
                self._reject(orjson.dumps(r), err.reason.value, err.detail, REST_SOURCE, symbol)
                continue
            ts = te.ts_event
            if self.dedup.seen(te.identity, ts):
                self.stats.duplicates += 1
                self.metrics.duplicates.inc()
                continue
            if ts > self.last_seen.get(symbol, 0):
                self.last_seen[symbol] = ts
            self._produce(self.trades_topic, orjson.dumps(te.to_dict()), key)
            new += 1
        if dup:
            self.stats.duplicates += dup
            self.metrics.duplicates.inc(dup)
        self.metrics.messages_in.labels(REST_SOURCE).inc(len(results))
        self.stats.trades_in += len(results)
        self.stats.produced += new
        return new

    async def gap_fill(self, since: Mapping[str, int]) -> int:
        """Fetch ``/v3/trades`` for every symbol from ``since[symbol]`` up to now.

        Symbol after symbol, each from its own start: the window keeps what it held before the
        fill until the fill ends (:meth:`DedupWindow.filling`), so a gap longer than the dedup
        horizon does not make the first symbol's trades push out what the later ones overlap.
        Each page is progress: a long fill that goes on stays live, one that stalls does not.
        """
        if self._rest is None:
            return 0
        upto = time.time_ns()
        total = 0
        with self.dedup.filling():
            for sym in self.symbols:
                start = since[sym]
                async for page in self._rest.trades(sym, gte_ns=start, lte_ns=upto, order="asc"):
                    self.heartbeat = self._clock()
                    total += self.process_rest_trades(sym, page)
                    if not self.has_room():
                        await self._wait_for_room()
        self.stats.gap_fills += 1
        self.stats.gap_filled += total
        self.metrics.gap_fills.inc()
        self.metrics.gap_filled.inc(total)
        log.info("gap_filled", trades=total, symbols=len(self.symbols))
        return total

    # ------------------------------------------------------------------ loops
    async def _process(self, stop: asyncio.Event) -> None:
        q = self.queue
        pending_gap: dict[str, int] | None = None
        lookback = int(self.cfg.gap_lookback_s * NS_PER_S)
        while True:
            self.heartbeat = self._clock()
            try:
                item = await asyncio.wait_for(q.get(), timeout=1.0)
            except TimeoutError:
                if stop.is_set():
                    return
                continue
            self.metrics.queue_depth.set(q.qsize())
            if isinstance(item, Connected):
                if self.first_connected_ns is None:
                    self.first_connected_ns = item.at_ns
                    if self._resume_from is None:
                        continue
                    # A restart: fill from the last ACKNOWLEDGED trades (the topic's tail).
                    pending_gap, self._resume_from = self._resume_from, None
                if pending_gap is None:
                    base = self.first_connected_ns
                    pending_gap = {
                        s: max(0, self.last_seen.get(s, base) - lookback) for s in self.symbols
                    }
                await item.subscribed.wait()
                if item.ok and self.cfg.gap_fill:
                    await self.gap_fill(pending_gap)
                    pending_gap = None
                elif item.ok:
                    pending_gap = None
                continue
            if not self.has_room():
                await self._wait_for_room()
            self.process_frame(item)
            await asyncio.sleep(0)

    async def _ensure_topics(self, bootstrap: str, stop: asyncio.Event) -> bool:
        """Check (or create) the topics; while the broker does not answer, retry with backoff,
        alive but not ready, instead of exiting into a crash loop. A topic that breaks the
        contract (:class:`TopicContractError`) still stops the service: that is configuration.
        ``False`` if stopped before the broker answered."""
        specs = trade_topics(self.settings.kafka, self.cfg)
        delay = self.cfg.backoff_base_s
        while not stop.is_set():
            try:
                await asyncio.to_thread(ensure_topics, bootstrap, specs, _TOPIC_CHECK_TIMEOUT_S)
                return True
            except KafkaException as err:
                log.warning("kafka_unavailable_at_start", error=str(err), retry_in_s=delay)
            self.heartbeat = self._clock()  # waiting for the broker is not a hang
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, self.cfg.backoff_cap_s)
        return False

    async def _resume(self, bootstrap: str) -> None:
        """After a restart: seed the dedup window and the gap fill from the acknowledged tail
        of the trades topic (:mod:`signalstack.ingest.resume`)."""
        lookback = int(self.cfg.gap_lookback_s * NS_PER_S)
        margin = int(self.cfg.resume_margin_s * NS_PER_S)

        def progress() -> None:  # on the reading thread: reading the tail is not a hang
            self.heartbeat = self._clock()

        try:
            tail = await asyncio.to_thread(
                read_topic_tail, bootstrap, self.trades_topic, lookback + margin,
                skew_ns=margin, on_progress=progress,
            )  # fmt: skip
        except (KafkaException, TimeoutError) as err:
            # Running without the resume point beats a crash loop: say so loudly.
            log.error("ingest_resume_failed", error=str(err))
            return
        if tail.last_produced_ns is None:
            return  # a new topic: nothing to resume
        age_s = (time.time_ns() - tail.last_produced_ns) / NS_PER_S
        if age_s > self.cfg.resume_max_gap_s:
            log.info("ingest_resume_skipped", last_trade_age_s=round(age_s))
            return
        cur = self.dedup.current
        newest = 0
        for ident, ts in tail.identities:
            cur.add(ident)
            newest = max(newest, ts)
        if newest:
            self.dedup.advance(newest)
            self._newest_ts = newest
        self.last_seen.update(tail.newest)
        self._resume_from = tail.gap_starts(self.symbols, lookback)
        log.info("ingest_resume", trades_read=len(tail.identities), last_trade_age_s=round(age_s),
                 symbols=len(tail.newest))  # fmt: skip

    def _flush(self, timeout: float) -> int:
        """At shutdown, on a worker thread: flush, then once more for what had to be produced
        again (the delivery thread has stopped)."""
        p = self._producer
        assert p is not None
        deadline = time.monotonic() + timeout
        remaining = p.flush(timeout)
        while self._undelivered or self._backlog:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._redeliver()
            self._drain_backlog()
            remaining = p.flush(left)
        return int(remaining) + len(self._backlog) + len(self._undelivered)

    async def run(self, stop: asyncio.Event | None = None) -> IngestStats:
        """Run until ``stop`` is set (or SIGTERM/SIGINT via :func:`run`). Raises
        :class:`PolygonAuthError` when the key is refused (after flushing what was produced)."""
        stop = stop or asyncio.Event()
        # The probes answer from the start: the topic check and the start-up tail read can take
        # a while (the tail read beats the heartbeat), and a kubelet must not kill the pod for it.
        health = HealthServer(
            self.cfg.http_host, self.cfg.http_port, self.metrics.registry,
            live=(self.live,), ready=(self.ready,), name="ingest-http",
        ).start()  # fmt: skip
        self.health = health  # set once listening, so its url names the bound port
        try:
            return await self._run(stop)
        finally:
            await asyncio.to_thread(health.stop)

    async def _run(self, stop: asyncio.Event) -> IngestStats:
        assert self.health is not None
        s = self.settings
        bootstrap = s.kafka.bootstrap_servers
        if not await self._ensure_topics(bootstrap, stop):
            return self.stats  # stopped before the broker answered: nothing was produced
        if self.cfg.gap_fill:
            await self._resume(bootstrap)
        self.topics_ready = True
        conf = producer_config(bootstrap, self.cfg, self._producer_overrides)
        conf["on_delivery"] = self._on_delivery
        conf["error_cb"] = self.broker.on_error
        conf["stats_cb"] = self.broker.on_stats
        if not conf.get("statistics.interval.ms"):  # readiness sees a broker come back
            conf["statistics.interval.ms"] = 1000
        if self._errors_only:
            conf["delivery.report.only.error"] = True
        self._queue_max = int(conf["queue.buffering.max.messages"]) // 2
        if self.cfg.message_timeout_ms:
            # A message that timed out may have been written all the same: producing it again
            # (what :meth:`_redeliver` does) is at-least-once, not exactly-once.
            log.warning(
                "ingest_message_timeout_at_least_once",
                message_timeout_ms=self.cfg.message_timeout_ms,
                detail="INGEST_MESSAGE_TIMEOUT_MS is not 0: a trade whose delivery times out is "
                "produced again and may be written twice (0, the default, is exactly-once)",
            )
        self._producer = Producer(conf)
        self._poll_stop.clear()
        self._poller = threading.Thread(
            target=self._poll_deliveries, name="ingest-delivery", daemon=True
        )
        self._poller.start()
        key = s.polygon.api_key.get_secret_value() if s.polygon.api_key else ""
        if key:
            self._rest = PolygonRestClient(
                str(s.polygon.rest_url), key, rate_per_s=s.polygon.rest_rate_per_s,
                **self._rest_options,
            )  # fmt: skip
        self.conditions = await load_conditions(self._rest)
        log.info("conditions_loaded", source=self.conditions.source, codes=len(self.conditions))
        ws_kw: dict[str, Any] = {
            "backoff_base": self.cfg.backoff_base_s,
            "backoff_cap": self.cfg.backoff_cap_s,
            "max_connections_backoff": self.cfg.max_connections_backoff_s,
        }
        ws_kw.update(self._ws_options)
        client = PolygonWebSocketClient(
            str(s.polygon.ws_url), key, [f"T.{x}" for x in self.symbols], self.queue,
            observer=_Observer(self), **ws_kw,
        )  # fmt: skip
        log.info("ingest_started", symbols=len(self.symbols), health=self.health.url,
                 topic=self.trades_topic)  # fmt: skip
        reader = asyncio.create_task(client.run(stop), name="ws-reader")
        processor = asyncio.create_task(self._process(stop), name="processor")
        try:
            done, _ = await asyncio.wait({reader, processor}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done and reader.exception() is None:
                # Stopped: drain what the reader queued, then stop the processor.
                while not self.queue.empty():
                    await asyncio.sleep(0.01)
                    if processor.done():
                        break
            for t in (reader, processor):
                if t in done and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            stop.set()
            for t in (reader, processor):
                if not t.done():
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await t
            self._poll_stop.set()
            if self._poller is not None:
                await asyncio.to_thread(self._poller.join)
            self._drain_backlog()
            remaining = await asyncio.to_thread(self._flush, 30.0)
            if remaining:
                log.error("kafka_flush_incomplete", remaining=remaining)
            self._report_acks()
            self._producer = None
            if self._rest is not None:
                await self._rest.aclose()
            log.info("ingest_stopped", **self.stats.__dict__)
        return self.stats


def run(
    settings: Settings,
    *,
    symbols: Sequence[str] | None = None,
    ingest: IngestSettings | None = None,
    stop: asyncio.Event | None = None,
) -> IngestStats:
    """Entry point for ``signalstack ingest``: runs until SIGTERM/SIGINT.

    Raises :class:`PolygonAuthError` (exit code 4) when Polygon refuses the key.
    """
    if not (settings.polygon.api_key and settings.polygon.api_key.get_secret_value()):
        raise PolygonAuthError("POLYGON_API_KEY is not set: the ingest service needs a Polygon key")

    async def main() -> IngestStats:
        ev = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, ev.set)
        svc = IngestService(settings, ingest, symbols=symbols)
        tune_gc()
        return await svc.run(ev)

    return asyncio.run(main())
