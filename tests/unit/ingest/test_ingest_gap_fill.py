"""The gap fill at the unit level (a stub REST page source, a stub producer queue): every trade
once across symbols after an outage longer than the dedup horizon, liveness that follows the
fill's progress on an injected clock, and the ack count read race."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from signalstack.config import MarketSettings, Settings
from signalstack.ingest import IngestService, IngestSettings
from signalstack.ingest import service as service_mod
from signalstack.ingest.resume import TopicTail

S = 1_000_000_000
SYMS = ("AAPL", "MSFT")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class StubProducer:
    """What the fill path needs of a producer: a local queue that takes everything."""

    def __init__(self) -> None:
        self.values: list[bytes] = []

    def produce(self, topic: str, value: bytes, key: bytes | None = None, **kw: Any) -> None:
        self.values.append(value)

    def __len__(self) -> int:
        return 0


def _trade(ts_ns: int, k: int) -> dict[str, Any]:
    return {"sip_timestamp": ts_ns, "price": 100.0 + k % 7, "size": 10, "exchange": 4,
            "conditions": [], "id": str(k), "sequence_number": k, "tape": 3}  # fmt: skip


class StubRest:
    """``/v3/trades`` from a fixed tape per symbol, ``page`` results a page; ``between_pages``
    runs before each page after the first (the test's view of the service mid-fill)."""

    def __init__(
        self, tape: dict[str, list[dict[str, Any]]], page: int, between_pages: Callable[[], None]
    ) -> None:
        self.tape, self.page, self.between_pages = tape, page, between_pages

    async def trades(
        self, symbol: str, *, gte_ns: int, lte_ns: int, order: str = "asc"
    ) -> AsyncIterator[list[dict[str, Any]]]:
        rows = [r for r in self.tape[symbol] if gte_ns <= r["sip_timestamp"] <= lte_ns]
        for k in range(0, len(rows), self.page):
            if k:
                self.between_pages()
            yield rows[k : k + self.page]
            await asyncio.sleep(0)


def _service(clock: Callable[[], float] | None = None, **kw: Any) -> IngestService:
    s = Settings(market=MarketSettings(symbols=SYMS))
    svc = IngestService(s, IngestSettings(**kw), **({} if clock is None else {"clock": clock}))
    svc._producer = StubProducer()  # type: ignore[assignment]
    return svc


def _produced(svc: IngestService) -> list[tuple[str, int, str]]:
    p = svc._producer
    assert isinstance(p, StubProducer)
    out = []
    for v in p.values:
        d = orjson.loads(v)
        out.append((d["symbol"], d["exchange"], d["trade_id"]))
    return out


def test_a_restart_after_an_outage_longer_than_twice_the_horizon_writes_each_trade_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two symbols, the topic's tail seeds the window, the pod was down 3500 s (> 2 × 600 s):
    the first symbol's fill moves event time past the horizon twice, and the second symbol's
    overlap with the tail must still be dropped."""
    now = time.time_ns()
    down = 3500 * S
    last = now - down  # the newest acknowledged trade
    tape = {
        sym: [_trade(last - 600 * S + k * 10 * S, n * 100_000 + k) for k in range(60 + 350)]
        for n, sym in enumerate(SYMS)
    }
    lookback, margin = 300 * S, 60 * S
    in_topic = {  # what the tail holds: both symbols up to the last acknowledged trade
        (sym, 4, r["id"]): r["sip_timestamp"]
        for sym in SYMS
        for r in tape[sym]
        if last - lookback - margin <= r["sip_timestamp"] <= last
    }
    tail = TopicTail(
        last_produced_ns=last,
        window_start_ns=last - lookback - margin,
        newest=dict.fromkeys(SYMS, last),
        identities=list(in_topic.items()),
    )

    def read_tail(*a: Any, **kw: Any) -> TopicTail:
        return tail

    monkeypatch.setattr(service_mod, "read_topic_tail", read_tail)
    svc = _service()
    held: list[int] = []

    def memory() -> None:
        d = svc.dedup
        sets = {id(s): s for s in (d.current, d.previous, *getattr(d, "pinned", ()))}
        held.append(sum(len(s) for s in sets.values()))

    svc._rest = StubRest(tape, page=20, between_pages=memory)  # type: ignore[assignment]

    async def restart() -> None:
        await svc._resume("unused:9092")
        assert svc._resume_from is not None
        await svc.gap_fill(svc._resume_from)

    asyncio.run(restart())

    ids = _produced(svc)
    again = set(ids) & set(in_topic)
    assert not again, f"{len(again)} trades the topic holds were written again"
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} trades written twice"
    expected = {(sym, 4, r["id"]) for sym in SYMS for r in tape[sym] if r["sip_timestamp"] > last}
    assert set(ids) == expected
    # Live trades after the fill: the last horizon of the fill is still remembered...
    assert all(svc.dedup.known((sym, 4, tape[sym][-1]["id"])) for sym in SYMS)
    assert not svc.dedup.pinned
    # ... and memory stays bounded: a generation is at most 61 trades a symbol here, and at no
    # time more than the generations held at the start and about three of the fill.
    per_gen = 61 * len(SYMS)
    assert max(held) <= 5 * per_gen < len(expected) + len(in_topic)
    assert len(svc.dedup) <= 2 * per_gen


def test_a_reconnect_fill_longer_than_the_horizon_writes_each_trade_once() -> None:
    """The same for an ordinary reconnect: what the stream delivered before the disconnect is
    overlapped by every symbol's fill (lookback), and the fill spans > 2 × the horizon."""
    now = time.time_ns()
    t0 = now - 2000 * S
    tape = {
        sym: [_trade(t0 - 300 * S + k * 10 * S, n * 100_000 + k) for k in range(231)]
        for n, sym in enumerate(SYMS)
    }
    svc = _service(dedup_horizon_s=300.0, gap_lookback_s=200.0)
    for sym in SYMS:  # the stream, before the disconnect at t0
        for r in tape[sym]:
            if r["sip_timestamp"] <= t0:
                svc.dedup.seen((sym, 4, r["id"]), r["sip_timestamp"])
                svc.last_seen[sym] = r["sip_timestamp"]
    svc._rest = StubRest(tape, page=25, between_pages=lambda: None)  # type: ignore[assignment]
    since = {sym: svc.last_seen[sym] - 200 * S for sym in SYMS}
    asyncio.run(svc.gap_fill(since))
    ids = _produced(svc)
    before = {(sym, 4, r["id"]) for sym in SYMS for r in tape[sym] if r["sip_timestamp"] <= t0}
    again = set(ids) & before
    assert not again, f"{len(again)} trades the stream delivered were written again"
    assert set(ids) == {
        (sym, 4, r["id"]) for sym in SYMS for r in tape[sym] if r["sip_timestamp"] > t0
    }


def test_a_long_fill_that_makes_progress_stays_live_and_a_stalled_one_does_not() -> None:
    clock = Clock(5_000.0)
    now = time.time_ns()
    tape = {sym: [_trade(now - 1000 * S + k * S, k) for k in range(100)] for sym in SYMS}
    svc = _service(clock, stale_after_s=30.0)
    seen: list[bool] = []

    def page_every_20s() -> None:
        clock.now += 20.0
        seen.append(svc.live()[0])

    svc._rest = StubRest(tape, page=10, between_pages=page_every_20s)  # type: ignore[assignment]
    asyncio.run(svc.gap_fill(dict.fromkeys(SYMS, 0)))
    assert len(seen) == 18 and all(seen)  # 360 s of fill, a page every 20 s: live throughout

    svc = _service(clock, stale_after_s=30.0)
    stalled: list[tuple[bool, str]] = []

    def stall() -> None:
        clock.now += 45.0  # a page that takes longer than stale_after_s
        stalled.append(svc.live())

    svc._rest = StubRest(tape, page=50, between_pages=stall)  # type: ignore[assignment]
    asyncio.run(svc.gap_fill(dict.fromkeys(SYMS, 0)))
    assert stalled and all(not ok and "silent for 45s" in why for ok, why in stalled)


def test_reading_the_topic_tail_at_start_up_counts_as_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock(10.0)
    svc = _service(clock, stale_after_s=30.0)
    seen: list[bool] = []

    def read_tail(*a: Any, on_progress: Callable[[], None], **kw: Any) -> TopicTail:
        for _ in range(6):  # 120 s of reading, a batch every 20 s
            clock.now += 20.0
            on_progress()
            seen.append(svc.live()[0])
        return TopicTail()

    monkeypatch.setattr(service_mod, "read_topic_tail", read_tail)
    asyncio.run(svc._resume("unused:9092"))
    assert seen == [True] * 6
    clock.now += 31.0
    assert not svc.live()[0]


class RacingProducer:
    """A producer queue whose length is read just before the loop thread produces one more
    message (and counts it): the interleaving of the delivery thread's ack count with a
    produce on the loop thread."""

    def __init__(self, svc: IngestService) -> None:
        self.svc = svc
        self.queued = 0

    def __len__(self) -> int:
        n = self.queued
        self.queued += 1  # the loop thread produces right after the length was read...
        self.svc._sent += 1  # ... and counts it
        return n


def test_the_ack_count_never_counts_a_message_produced_while_it_is_read() -> None:
    svc = _service(delivery_reports="errors")
    svc._producer = RacingProducer(svc)  # type: ignore[assignment]
    for _ in range(3):
        svc._report_acks()
        assert svc.stats.acked == 0  # nothing left the queue: nothing was acknowledged
    assert svc._acks_reported == 0
