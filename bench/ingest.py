"""Ingest throughput: Polygon WebSocket frames in → Kafka acks (market.trades), one process.

Set-up: a real Kafka broker (devstack, loopback), the fake Polygon server in its own process
serving a simulated day as fast as the client reads, and the pipeline under test in this
process. One ingest process on one core: this process and its librdkafka threads are pinned to
one CPU, the broker and the fake server to the others.

The clock, the same for every pipeline: from the first frame the pipeline's code receives (wall
clock) to the REAL last acknowledgement — the broker's log-append time of the newest message in
the topic (the bench's topics are created with ``message.timestamp.type=LogAppendTime``; on one
broker the ack follows the append at once). No pipeline's own ack counter is the clock.

``trades_per_s``: our ingest service, best of ``--rounds`` interleaved runs after one discarded
warm-up run (the machine is shared; every sample is kept in the JSON), with the shipped
delivery-report mode (``errors``: failures reported, acks counted from the producer queue);
``trades_per_s_all_reports`` with a Python callback per message (``INGEST_DELIVERY_REPORTS=all``);
``trades_per_s_service_clock``: the same run timed to when the service counted its last ack.
``trades_per_cpu_s``: the same trades per CPU-second of the ingest process (its thread and
librdkafka's).
``baseline_trades_per_s``: what a typical user runs, on the same feed in the same run, pinned to
the same core: the official client (``massive.WebSocketClient``) calling a handler with parsed
trades, each serialised (stdlib ``json``) and handed to a confluent-kafka ``Producer`` with the
same guarantees as ours (idempotent, acks=all, lz4): ``produce`` per trade, ``poll(0)``, ``flush``
at the end. ``speedup_vs_baseline`` = ``trades_per_s`` / ``baseline_trades_per_s``.

    .venv/bin/python bench/ingest.py [--trades 1000000] [--rounds 3]

``BENCH_INGEST_OUT=path`` writes the JSON elsewhere (a sanity run that is not for the record).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, Producer, TopicPartition
from massive import WebSocketClient  # type: ignore[import-untyped]
from massive.websocket.models import (  # type: ignore[import-untyped]
    EquityTrade,
    WebSocketMessage,
)
from pydantic import SecretStr

from signalstack.config import KafkaSettings, MarketSettings, PolygonSettings, Settings
from signalstack.devstack import KafkaServer
from signalstack.ingest import IngestService, IngestSettings
from signalstack.ingest.kafka_io import TopicSpec, ensure_topics, trade_topics
from signalstack.process import tune_gc

ROOT = Path(__file__).resolve().parents[1]
SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "TSLA", "SPY")


def start_fake(
    trades_per_day: int, batch: int, others: set[int]
) -> tuple[subprocess.Popen[bytes], int]:
    port_file = Path(tempfile.mkdtemp()) / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "signalstack.marketdata.fake_polygon", "--rate", "0",
         "--no-restamp", "--preencode", "--batch", str(batch), "--symbols", ",".join(SYMBOLS),
         "--trades-per-day", str(trades_per_day), "--port-file", str(port_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "LOG_LEVEL": "WARNING"}, start_new_session=True,
    )  # fmt: skip
    pin(proc.pid, others)
    t0 = time.time()
    while not port_file.exists() or not port_file.read_text():
        if proc.poll() is not None or time.time() - t0 > 120:
            raise RuntimeError("fake polygon server did not start")
        time.sleep(0.1)
    return proc, int(port_file.read_text())


def settings(bootstrap: str, port: int, suffix: str) -> Settings:
    return Settings(
        polygon=PolygonSettings(
            api_key=SecretStr("test-key"), ws_url=f"ws://127.0.0.1:{port}/stocks",
            rest_url=f"http://127.0.0.1:{port}", rest_rate_per_s=1000,
        ),
        kafka=KafkaSettings(
            bootstrap_servers=bootstrap, trades_topic=f"bench.trades.{suffix}",
            dlq_topic=f"bench.trades.dlq.{suffix}",
        ),
        market=MarketSettings(symbols=SYMBOLS),
    )  # fmt: skip


def bench_topics(s: Settings) -> list[TopicSpec]:
    """The service's topics, the trades topic stamped by the broker: the clock's end."""
    trades, dlq = trade_topics(s.kafka, IngestSettings())
    conf = {**trades.config, "message.timestamp.type": "LogAppendTime"}
    return [TopicSpec(trades.name, trades.partitions, trades.replication_factor, conf), dlq]


def last_append(bootstrap: str, topic: str) -> tuple[float, int]:
    """(broker log-append time of the newest message in ``topic`` in s, messages in it)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{time.time_ns()}",
                  "enable.auto.commit": False})  # fmt: skip
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        newest, count = 0, 0
        for p in parts:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            count += hi - lo
            if hi <= lo:
                continue
            c.assign([TopicPartition(topic, p, hi - 1)])
            deadline = time.time() + 30
            while time.time() < deadline:
                m = c.poll(1.0)
                if m is not None and m.error() is None:
                    kind, ts = m.timestamp()
                    if kind != TIMESTAMP_LOG_APPEND_TIME:
                        raise RuntimeError(f"{topic} is not stamped by the broker (type {kind})")
                    newest = max(newest, ts)
                    break
            else:
                raise RuntimeError(f"could not read the last message of {topic}[{p}]")
        return newest / 1000, count
    finally:
        c.close()


async def measure_ingest(s: Settings, expected: int, reports: str) -> dict[str, float]:
    ing = IngestSettings(
        http_port=0, max_skew_s=None, gap_fill=False, queue_frames=1024, delivery_reports=reports
    )
    svc = IngestService(s, ing)
    stop = asyncio.Event()
    first: list[float] = []
    orig = svc.process_frame

    def timed(frame: str | bytes) -> None:
        if not first:
            first.extend((time.time(), time.perf_counter(), time.process_time()))
        orig(frame)

    svc.process_frame = timed  # type: ignore[method-assign]
    task = asyncio.create_task(svc.run(stop))
    deadline = time.time() + 300
    while svc.stats.acked < expected and time.time() < deadline and not task.done():
        await asyncio.sleep(0.005)
    end, cpu_end = time.perf_counter(), time.process_time()
    stop.set()
    stats = await task
    if stats.acked < expected:
        raise RuntimeError(f"ingest acknowledged {stats.acked} of {expected} trades")
    acked_at, in_topic = last_append(s.kafka.bootstrap_servers, s.kafka.trades_topic)
    secs, cpu = acked_at - first[0], cpu_end - first[2]
    return {
        "trades": in_topic, "seconds": secs, "trades_per_s": in_topic / secs,
        "service_clock_seconds": end - first[1],
        "trades_per_s_service_clock": stats.acked / (end - first[1]),
        "cpu_seconds": cpu, "rejected": stats.rejected, "duplicates": stats.duplicates,
    }  # fmt: skip


async def measure_baseline(s: Settings, total: int) -> dict[str, float]:
    """The typical pipeline: the official client → a handler → ``produce`` per trade."""
    p = Producer({"bootstrap.servers": s.kafka.bootstrap_servers, "enable.idempotence": True,
                  "acks": "all", "compression.type": "lz4"})  # fmt: skip
    topic = s.kafka.trades_topic
    # ws://127.0.0.1:PORT/stocks: the client builds ws[s]://{feed}/{market}
    feed = str(s.polygon.ws_url).split("://", 1)[1].rsplit("/", 1)[0]
    client = WebSocketClient(
        api_key="test-key", feed=feed, market="stocks", secure=False, subscriptions=["T.*"]
    )
    n = 0
    first: list[float] = []

    async def handle(msgs: list[WebSocketMessage]) -> None:
        nonlocal n
        if not first:
            first.extend((time.time(), time.process_time()))
        for m in msgs:
            if not isinstance(m, EquityTrade):
                continue
            value = json.dumps(m.__dict__).encode()
            while True:
                try:
                    p.produce(topic, value, m.symbol)
                    break
                except BufferError:  # the local queue is full: serve reports, then retry
                    p.poll(0.1)
            p.poll(0)
            n += 1
        if n >= total:
            await client.close()

    await asyncio.wait_for(client.connect(handle), 600)
    left = p.flush(120)
    cpu_end = time.process_time()
    if n < total or left:
        raise RuntimeError(f"baseline: {n} of {total} trades read, {left} not acknowledged")
    acked_at, in_topic = last_append(s.kafka.bootstrap_servers, topic)
    secs = acked_at - first[0]
    return {"trades": in_topic, "seconds": secs, "trades_per_s": in_topic / secs,
            "cpu_seconds": cpu_end - first[1]}  # fmt: skip


def pin(pgid: int, cpus: set[int]) -> None:
    """Pin every thread of every process in a process group to ``cpus``."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if os.getpgid(int(d.name)) != pgid:
                continue
            for t in (d / "task").iterdir():
                os.sched_setaffinity(int(t.name), cpus)
        except (OSError, ProcessLookupError):
            continue


def warm_up(bootstrap: str) -> None:
    """A fresh broker's first idempotent producer waits for the transaction coordinator and
    topic leadership: pay that before anything is measured."""
    ensure_topics(bootstrap, [TopicSpec("bench.warmup", 6)])
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                  "compression.type": "lz4", "linger.ms": 20,
                  "queue.buffering.max.messages": 1_000_000})  # fmt: skip
    for i in range(200_000):
        p.produce("bench.warmup", b"x" * 200, SYMBOLS[i % len(SYMBOLS)])
        if i % 10_000 == 0:
            p.poll(0)
    p.flush(60)


def machine() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}  # fmt: skip


def run_once(
    kafka: KafkaServer, mode: str, per_day: int, batch: int, expected: int, total: int,
    other_cpus: set[int],
) -> dict[str, float]:  # fmt: skip
    """One run on a fresh fake server and fresh topics: ``mode`` is a delivery-report mode of
    our service, or ``baseline``."""
    fake, port = start_fake(per_day, batch, other_cpus)
    try:
        s = settings(kafka.bootstrap, port, f"{mode}-{time.time_ns()}")
        ensure_topics(kafka.bootstrap, bench_topics(s))
        if mode == "baseline":
            r = asyncio.run(measure_baseline(s, total))
        else:
            r = asyncio.run(measure_ingest(s, expected, mode))
        r["trades_per_cpu_s"] = r["trades"] / r["cpu_seconds"]
        print(mode, round(r["trades_per_s"]), round(r["trades_per_cpu_s"]), flush=True)
        return r
    finally:
        fake.terminate()
        fake.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trades", type=int, default=1_000_000, help="approximate trades in the feed")
    ap.add_argument("--batch", type=int, default=500, help="trades per WebSocket frame")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved runs per mode; best kept")
    a = ap.parse_args()
    per_day = a.trades // len(SYMBOLS)
    from signalstack.marketdata.simulator import SimConfig, simulate

    sim = simulate(SimConfig(symbols=SYMBOLS, trades_per_day=per_day))
    total = len(sim)  # every trade on the feed: what the baseline produces
    expected = total - int(sim.is_duplicate.sum())  # the ingest drops duplicate deliveries
    del sim
    # One ingest process on one core: this process (and librdkafka's threads, which inherit the
    # mask) on CPU 0; the broker and the fake Polygon server on the others.
    cpus = sorted(os.sched_getaffinity(0))
    ingest_cpus, other_cpus = {cpus[0]}, set(cpus[1:]) or {cpus[0]}
    modes = ("errors", "all", "baseline")
    samples: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    t_start = time.monotonic()
    with KafkaServer() as kafka:
        assert kafka.proc is not None
        pin(kafka.proc.pid, other_cpus)
        warm_up(kafka.bootstrap)
        os.sched_setaffinity(0, ingest_cpus)
        tune_gc()  # what `signalstack ingest` does at start-up
        # warm-up: the broker's first run of a fresh topic is slower
        run_once(kafka, "errors", per_day, a.batch, expected, total, other_cpus)
        for _ in range(a.rounds):
            for mode in modes:
                r = run_once(kafka, mode, per_day, a.batch, expected, total, other_cpus)
                samples[mode].append(r)
    best = {m: max(v, key=lambda r: r["trades_per_s"]) for m, v in samples.items()}
    default = IngestSettings().delivery_reports
    other = "all" if default == "errors" else "errors"
    fast, base = best[default], best["baseline"]
    result = {
        "trades_per_s": round(fast["trades_per_s"]),
        "baseline_trades_per_s": round(base["trades_per_s"]),
        "speedup_vs_baseline": round(fast["trades_per_s"] / base["trades_per_s"], 2),
        "clock": "first frame received -> broker log-append time of the last message",
        "trades_per_s_service_clock": round(fast["trades_per_s_service_clock"]),
        "delivery_reports": default,
        "rounds": a.rounds,
        "samples_trades_per_s": {
            k: [round(x["trades_per_s"]) for x in v] for k, v in samples.items()
        },
        "samples_trades_per_cpu_s": {
            k: [round(x["trades_per_cpu_s"]) for x in v] for k, v in samples.items()
        },
        f"trades_per_s_{other}_reports": round(best[other]["trades_per_s"]),
        f"trades_per_cpu_s_{other}_reports": round(best[other]["trades_per_cpu_s"]),
        "trades": fast["trades"],
        "seconds": round(fast["seconds"], 3),
        # CPU of the ingest process (its Python thread + librdkafka's threads) over the same span.
        "ingest_cpu_seconds": round(fast["cpu_seconds"], 3),
        "trades_per_cpu_s": round(fast["trades_per_cpu_s"]),
        "baseline_trades": base["trades"],
        "baseline_trades_per_cpu_s": round(base["trades_per_cpu_s"]),
        "baseline": "massive.WebSocketClient -> json.dumps -> Producer.produce + poll(0) per "
        "trade, flush at the end (idempotent, acks=all, lz4), same core",
        "load_average_1m": round(os.getloadavg()[0], 2),
        "ingest_cpus": sorted(ingest_cpus),
        "broker_and_fake_cpus": sorted(other_cpus),
        "budget_trades_per_s": 100_000,
        "frame_batch": a.batch,
        "bench_wall_s": round(time.monotonic() - t_start),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    out = Path(os.environ.get("BENCH_INGEST_OUT", ROOT / "bench" / "results" / "ingest.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
