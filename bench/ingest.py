"""Ingest throughput: Polygon WebSocket frames in → Kafka acks (market.trades), one process.

Set-up: a real Kafka broker (devstack, loopback), the fake Polygon server in its own process
serving a simulated day as fast as the client reads, and the ingest service in this process.
One ingest process on one core: this process and its librdkafka threads are pinned to one CPU,
the broker and the fake server to the others.
``trades_per_s`` = trades acknowledged by Kafka / (last ack − first frame received), best of
``--rounds`` interleaved runs after one discarded warm-up run (the machine is shared; every
sample is kept in the JSON), with the shipped delivery-report mode (``errors``: failures
reported, acks counted from the producer queue); ``trades_per_s_per_message_reports`` with a
Python callback per message (``INGEST_DELIVERY_REPORTS=all``).
``trades_per_cpu_s``: the same trades per CPU-second of the ingest process (its thread and
librdkafka's).
``baseline_trades_per_s``: a naive loop on the same feed in the same run — stdlib ``json`` per
frame, ``validate_trade`` per trade, ``produce`` then ``flush()`` each (measured on a prefix).

    .venv/bin/python bench/ingest.py [--trades 1000000] [--baseline-trades 3000]
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

from confluent_kafka import Producer
from pydantic import SecretStr
from websockets.asyncio.client import connect

from signalstack.config import KafkaSettings, MarketSettings, PolygonSettings, Settings
from signalstack.devstack import KafkaServer
from signalstack.ingest import IngestService, IngestSettings
from signalstack.ingest.kafka_io import TopicSpec, ensure_topics, trade_topics
from signalstack.marketdata.wire import ws_trade_to_event
from signalstack.process import tune_gc
from signalstack.schemas.trade import validate_trade

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
            first.append(time.perf_counter())
            first.append(time.process_time())
        orig(frame)

    svc.process_frame = timed  # type: ignore[method-assign]
    task = asyncio.create_task(svc.run(stop))
    deadline = time.time() + 300
    while svc.stats.acked < expected and time.time() < deadline and not task.done():
        await asyncio.sleep(0.005)
    end, cpu_end = time.perf_counter(), time.process_time()
    stop.set()
    stats = await task
    secs, cpu = end - first[0], cpu_end - first[1]
    return {
        "trades": stats.acked, "seconds": secs, "trades_per_s": stats.acked / secs,
        "cpu_seconds": cpu, "rejected": stats.rejected, "duplicates": stats.duplicates,
    }  # fmt: skip


async def measure_baseline(s: Settings, limit: int) -> dict[str, float]:
    """Naive: parse one frame with json, validate and produce one trade, flush each."""
    p = Producer({"bootstrap.servers": s.kafka.bootstrap_servers, "enable.idempotence": True,
                  "acks": "all", "compression.type": "lz4"})  # fmt: skip
    n = 0
    async with connect(str(s.polygon.ws_url), max_size=None) as ws:
        await ws.recv()
        await ws.send(json.dumps({"action": "auth", "params": "test-key"}))
        await ws.recv()
        await ws.send(json.dumps({"action": "subscribe", "params": "T.*"}))
        t0 = None
        while n < limit:
            frame = await ws.recv()
            for ev in json.loads(frame):
                if ev.get("ev") != "T":
                    continue
                t0 = t0 or time.perf_counter()
                e = validate_trade(ws_trade_to_event(ev, time.time_ns()))
                p.produce(s.kafka.trades_topic, json.dumps(e.to_dict()).encode(), e.symbol.encode())
                p.flush()
                n += 1
                if n >= limit:
                    break
    secs = time.perf_counter() - (t0 or time.perf_counter())
    return {"trades": n, "seconds": secs, "trades_per_s": n / secs}


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trades", type=int, default=1_000_000, help="approximate trades in the feed")
    ap.add_argument("--baseline-trades", type=int, default=3_000)
    ap.add_argument("--batch", type=int, default=500, help="trades per WebSocket frame")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved runs per mode; best kept")
    a = ap.parse_args()
    per_day = a.trades // len(SYMBOLS)
    from signalstack.marketdata.simulator import SimConfig, simulate

    sim = simulate(SimConfig(symbols=SYMBOLS, trades_per_day=per_day))
    expected = len(sim) - int(sim.is_duplicate.sum())  # the ingest drops duplicates
    del sim
    # One ingest process on one core: this process (and librdkafka's threads, which inherit the
    # mask) on CPU 0; the broker and the fake Polygon server on the others.
    cpus = sorted(os.sched_getaffinity(0))
    ingest_cpus, other_cpus = {cpus[0]}, set(cpus[1:]) or {cpus[0]}
    with KafkaServer() as kafka:
        assert kafka.proc is not None
        pin(kafka.proc.pid, other_cpus)
        warm_up(kafka.bootstrap)
        os.sched_setaffinity(0, ingest_cpus)
        tune_gc()  # what `signalstack ingest` does at start-up
        runs: dict[str, dict[str, float]] = {}
        samples: dict[str, list[dict[str, float]]] = {"all": [], "errors": []}
        for k, reports in enumerate(("errors",) + ("errors", "all") * a.rounds):
            fake, port = start_fake(per_day, a.batch, other_cpus)
            try:
                s = settings(kafka.bootstrap, port, f"fast-{reports}-{len(runs)}-{time.time_ns()}")
                ensure_topics(kafka.bootstrap, trade_topics(s.kafka, IngestSettings()))
                r = asyncio.run(measure_ingest(s, expected, reports))
                r["trades_per_cpu_s"] = r["trades"] / r["cpu_seconds"]
                print(reports, round(r["trades_per_s"]), round(r["trades_per_cpu_s"]), flush=True)
                if k == 0:
                    continue  # warm-up: the broker's first run of a fresh topic is slower
                samples[reports].append(r)
                best = runs.get(reports)
                if best is None or r["trades_per_s"] > best["trades_per_s"]:
                    runs[reports] = r
            finally:
                fake.terminate()
                fake.wait()
        default = IngestSettings().delivery_reports
        other = "all" if default == "errors" else "errors"
        fast = runs[default]
        fake, port = start_fake(max(1000, a.baseline_trades), a.batch, other_cpus)
        try:
            sb = settings(kafka.bootstrap, port, "naive")
            ensure_topics(kafka.bootstrap, trade_topics(sb.kafka, IngestSettings()))
            base = asyncio.run(measure_baseline(sb, a.baseline_trades))
        finally:
            fake.terminate()
            fake.wait()
    result = {
        "trades_per_s": round(fast["trades_per_s"]),
        "baseline_trades_per_s": round(base["trades_per_s"], 1),
        "speedup": round(fast["trades_per_s"] / base["trades_per_s"], 1),
        "delivery_reports": default,
        "rounds": a.rounds,
        "samples_trades_per_s": {
            k: [round(x["trades_per_s"]) for x in v] for k, v in samples.items()
        },
        "samples_trades_per_cpu_s": {
            k: [round(x["trades_per_cpu_s"]) for x in v] for k, v in samples.items()
        },
        f"trades_per_s_{other}_reports": round(runs[other]["trades_per_s"]),
        f"trades_per_cpu_s_{other}_reports": round(runs[other]["trades_per_cpu_s"]),
        "trades": fast["trades"],
        "seconds": round(fast["seconds"], 3),
        # CPU of the ingest process (its Python thread + librdkafka's threads) over the same span.
        "ingest_cpu_seconds": round(fast["cpu_seconds"], 3),
        "trades_per_cpu_s": round(fast["trades"] / fast["cpu_seconds"]),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "ingest_cpus": sorted(ingest_cpus),
        "broker_and_fake_cpus": sorted(other_cpus),
        "baseline_trades": base["trades"],
        "budget_trades_per_s": 100_000,
        "frame_batch": a.batch,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    out = ROOT / "bench" / "results" / "ingest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
