"""Store benchmark: idempotent trade writer vs raw COPY vs baselines, and tick → row latency.

Starts its own TimescaleDB (and Kafka for the latency part) through signalstack.devstack, so it
measures the real servers on this machine. Writes bench/results/store.json:

- rows_per_s: fresh trades through TimescaleStore.write_trades (validation + idempotent writer)
- raw_copy_rows_per_s: the same rows, plain binary COPY into the same indexed hypertable
- raw_copy_parallel_rows_per_s: the same, split by symbol over two connections (the writer's
  scheme without its validation: the limit the writer is measured against as well)
- baseline_rows_per_s: the same rows, asyncpg executemany INSERT … ON CONFLICT DO NOTHING
- staging_rows_per_s: the same rows, staging table + INSERT … ON CONFLICT on every batch
- replay_rows_per_s: the same rows written again (all duplicates; the conflict path)
- tick_to_row_p50_ms / p99_ms: produce to Kafka → row visible in TimescaleDB, at --rate
  trades/s for --seconds: the sink runs as its own process (``python -m signalstack.sink``),
  and a poller on a separate connection stamps each row when a query first returns it
  (see Poller), against the produce time the producer wrote into ts_ingest

Usage: python bench/store.py [--rows 300000] [--rate 10000] [--seconds 60] [--skip-latency]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import orjson
import pandas as pd
import psycopg

from signalstack.devstack import KafkaServer, TimescaleServer
from signalstack.process import tune_gc
from signalstack.store.batch import TradeBatch
from signalstack.store.frames import prepare_trades
from signalstack.store.synthetic import synthetic_trades
from signalstack.store.timescale import TimescaleStore
from signalstack.store.tradecopy import TRADE_COPY_COLUMNS
from signalstack.store.writer import TradeWriter

RESULTS = Path(__file__).resolve().parent / "results" / "store.json"


def fresh_db(server: TimescaleServer) -> str:
    name = f"b_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = server.dsn_for(name)
    s = TimescaleStore(dsn)
    s.migrate()
    s.close()
    return dsn


def truncate(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE trades")
        conn.execute("CHECKPOINT")


def timed(label: str, n: int, fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    rate = n / (time.perf_counter() - t0)
    print(f"  {label:<28} {rate:>12,.0f} rows/s")
    return rate


def throughput(server: TimescaleServer, rows: int, baseline_rows: int) -> dict[str, float]:
    dsn = fresh_db(server)
    df = synthetic_trades(rows, seed=42)
    typed, _ = prepare_trades(df)
    batch = TradeBatch.from_typed(typed)  # raw COPY and staging start from encoded-ready columns
    # The inputs live for the whole run: keep the collector's full passes off them (millions of
    # objects: ~0.1 s a pass, charged to whichever variant triggered it), as a long-running
    # service does with its start-up heap (signalstack.process.tune_gc).
    gc.collect()
    gc.freeze()
    out: dict[str, Any] = {}
    print(f"throughput, {rows:,} trades (baseline on the first {baseline_rows:,}):")

    store = TimescaleStore(dsn)
    store.write_trades(df.iloc[:1000])  # warm the pool and the chunk
    truncate(dsn)

    # Interleave repetitions so background load on the shared machine hits every variant.
    writer_rates, raw_rates, par_rates = [], [], []
    for _ in range(3):
        truncate(dsn)
        writer_rates.append(timed("writer (fresh)", rows, lambda: store.write_trades(df)))
        truncate(dsn)

        async def raw() -> None:
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
            w = TradeWriter(pool)
            async with pool.acquire() as conn:
                for s in range(0, len(batch), w.batch_rows):
                    await w._copy(conn, batch.take(slice(s, s + w.batch_rows)))
            await pool.close()

        raw_rates.append(timed("raw COPY", rows, lambda: asyncio.run(raw())))
        truncate(dsn)

        async def raw_parallel() -> None:
            # The writer's own scheme without its validation: each 50k slice split by symbol,
            # the parts COPYed at once on two connections.
            pool = await asyncpg.create_pool(dsn, min_size=2, max_size=2)
            w = TradeWriter(pool)

            async def part(p: TradeBatch) -> None:
                async with pool.acquire() as conn:
                    await w._copy(conn, p)

            for s in range(0, len(batch), 50_000):
                parts = batch.take(slice(s, s + 50_000)).split_by_symbol(2)
                await asyncio.gather(*(part(p) for p in parts))
            await pool.close()

        par_rates.append(
            timed("raw COPY, 2 connections", rows, lambda: asyncio.run(raw_parallel()))
        )
    out["rows_per_s"] = float(np.median(writer_rates))
    out["raw_copy_rows_per_s"] = float(np.median(raw_rates))
    out["raw_copy_parallel_rows_per_s"] = float(np.median(par_rates))
    out["writer_samples"] = writer_rates
    out["raw_copy_samples"] = raw_rates
    truncate(dsn)
    store.write_trades(df)
    out["replay_rows_per_s"] = timed(
        "replay (all duplicates)", rows, lambda: store.write_trades(df)
    )
    assert store.count("trades") == rows
    store.close()

    truncate(dsn)

    async def staging() -> None:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
        w = TradeWriter(pool)
        async with pool.acquire() as conn:
            for s in range(0, len(batch), w.batch_rows):
                await w._merge(conn, batch.take(slice(s, s + w.batch_rows)))
        await pool.close()

    out["staging_rows_per_s"] = timed("staging + ON CONFLICT", rows, lambda: asyncio.run(staging()))

    truncate(dsn)
    b = batch.take(slice(0, baseline_rows))
    records = [
        (
            pd.Timestamp(int(b.ts_event[i]) // 1000 * 1000, tz="UTC").to_pydatetime(),
            str(b.symbol[i]),
            int(b.exchange[i]),
            str(b.trade_id[i]),
            int(b.ts_event[i]),
            float(b.price[i]),
            float(b.size[i]),
            int(b.sequence[i]),
            list(b.conditions[i]),
            None if b.tape_null[i] else int(b.tape[i]),
            str(b.source[i]),
            int(b.ts_ingest[i]),
        )
        for i in range(len(b))
    ]
    cols = ", ".join(TRADE_COPY_COLUMNS)
    marks = ", ".join(f"${i + 1}" for i in range(len(TRADE_COPY_COLUMNS)))

    async def baseline() -> None:
        conn = await asyncpg.connect(dsn)
        for s in range(0, len(records), 10_000):
            async with conn.transaction():
                await conn.executemany(
                    f"INSERT INTO trades ({cols}) VALUES ({marks}) ON CONFLICT DO NOTHING",
                    records[s : s + 10_000],
                )
        await conn.close()

    out["baseline_rows_per_s"] = timed(
        "executemany INSERT", baseline_rows, lambda: asyncio.run(baseline())
    )
    return out


def _producer(
    bootstrap: str, topic: str, rate: int, seconds: float, warmup: float, ready: Any
) -> None:
    from confluent_kafka import Producer

    from signalstack.config import IngestSettings
    from signalstack.ingest.kafka_io import producer_config

    # Its own session, so its own CPU group (kernel autogroup), like the sink's: the load
    # generator is the ingest service, another pod on a cluster, not part of the poller's share.
    os.setsid()
    # The ingest service's producer, as shipped (idempotent, acks=all, lz4, its linger).
    p = Producer(producer_config(bootstrap, IngestSettings()))
    # Warm-up trades first (ids 0 … n_warm-1, same rate), then the measured ones: one stream,
    # each symbol's trades in ts_event order.
    n = int(rate * (warmup + seconds))
    df = synthetic_trades(n, seed=7, start=pd.Timestamp.now(tz="UTC"), span_s=warmup + seconds)
    # Everything but ts_ingest is serialised up front; ts_ingest (the produce time) is appended
    # at produce time, so the load generator spends little CPU on the shared cores.
    heads = []
    for r in df.to_dict("records"):
        r["schema_version"] = 1
        r["tape"] = None if pd.isna(r["tape"]) else int(r["tape"])
        del r["ts_ingest"]
        heads.append((r["symbol"].encode(), orjson.dumps(r)[:-1] + b',"ts_ingest":'))
    p.produce(topic + ".warmup", value=b"{}")  # acquire the idempotent PID before timing
    p.flush(30)
    ready.set()
    tick = 0.005
    per_tick = max(1, int(rate * tick))
    t0 = time.perf_counter()
    i = 0
    while i < n:
        target = t0 + (i / rate)
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        for key, head in heads[i : i + per_tick]:
            p.produce(topic, key=key, value=b"%s%d}" % (head, time.time_ns()))
        i += per_tick
        p.poll(0)
    p.flush(30)


def _jit_cpu_s(pid: int) -> float:
    """CPU seconds the JVM's JIT compiler threads have used so far."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            if "Compiler" in (t / "comm").read_text():
                st = (t / "stat").read_text().rsplit(")", 1)[1].split()
                total += int(st[11]) + int(st[12])
        except OSError:
            continue
    return total / tick


def warm_broker(
    bootstrap: str, jvm_pid: int, min_s: float = 30.0, max_s: float = 90.0
) -> dict[str, float]:
    """A fresh JVM interprets, then compiles, Kafka's produce and fetch paths: for its first
    minutes under load the broker spends up to a core in its JIT compiler threads. A production
    broker is long warm, so bursts go through a throwaway topic (produced and consumed with the
    ingest's producer settings) for at least ``min_s`` and until the compiler threads are nearly
    idle (< 5 % of a core over a burst), or ``max_s``. (A single burst under 10 % had been
    enough to stop once after 11 s, and that run's first seconds then carried the broker's
    compilation.) Returns the seconds spent and the last burst's JIT share."""
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    from signalstack.config import IngestSettings
    from signalstack.ingest.kafka_io import producer_config

    topic = "bench.jit-warmup"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the result
    for f in admin.create_topics([NewTopic(topic, num_partitions=6)]).values():
        f.result(30)
    p = Producer(producer_config(bootstrap, IngestSettings()))
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-warmup",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    c.subscribe([topic])
    heads = [orjson.dumps(r) for r in synthetic_trades(5000, seed=3).to_dict("records")]
    t0 = time.monotonic()
    share = 1.0
    i = 0
    while time.monotonic() - t0 < max_s:
        jit0, w0 = _jit_cpu_s(jvm_pid), time.monotonic()
        for _ in range(100_000):
            while True:
                try:
                    p.produce(topic, heads[i % len(heads)], b"%d" % (i % 64))
                    break
                except BufferError:
                    p.poll(0.01)
            i += 1
            if i % 1000 == 0:
                p.poll(0)
                c.consume(10_000, 0)
                time.sleep(0.002)  # many small requests, as at a steady rate
        p.flush(60)
        share = (_jit_cpu_s(jvm_pid) - jit0) / (time.monotonic() - w0)
        if share < 0.05 and time.monotonic() - t0 >= min_s:
            break
    c.close()
    return {"broker_warmup_seconds": time.monotonic() - t0, "broker_warmup_jit_share": share}


def warm_wal(dsn: str, rows: int, wal_bytes_per_row: int = 400) -> int:
    """Have PostgreSQL's WAL segments ready for the run, as on a server that has been up a
    while. A fresh cluster creates each 16 MB segment when the WAL reaches it: zero-filled and
    fsynced inside some writer's commit (40-160 ms, every ~7 s at 10k trades/s). A long-running
    one renames (recycles) old segments ahead at each checkpoint instead. So: fill and switch
    enough segments for ``rows`` trades, then CHECKPOINT, which recycles them (min_wal_size in
    the devstack keeps them). Returns the segments prepared."""
    segments = rows * wal_bytes_per_row // (16 << 20) + 4
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(segments):
            conn.execute("SELECT pg_logical_emit_message(false, 'signalstack-bench', 'wal')")
            conn.execute("SELECT pg_switch_wal()")
        conn.execute("CHECKPOINT")
    return segments


def _sink_proc(bootstrap: str, topic: str, dsn: str, http_port: int, log: Path) -> Any:
    """The real service, as deployed: ``python -m signalstack.sink`` in its own process."""
    from urllib.parse import urlsplit

    u = urlsplit(dsn)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TRADES_TOPIC": topic,
        "TIMESCALE_HOST": u.hostname or "",
        "TIMESCALE_PORT": str(u.port or 5432),
        "TIMESCALE_USER": u.username or "",
        "TIMESCALE_PASSWORD": u.password or "",
        "TIMESCALE_DATABASE": u.path.lstrip("/"),
        "STORE_TYPE": "timescale",
        "SINK_HTTP_PORT": str(http_port),
        "SINK_GROUP_ID": f"bench-{uuid.uuid4().hex[:6]}",
        "LOG_LEVEL": "WARNING",
    }
    with open(log, "ab") as fh:
        # Its own session, as the servers have: with the kernel's autogroup scheduling (on
        # here) CPU is shared between sessions first, and the sink is its own pod on a
        # cluster, not one more process in the load generator's share.
        return subprocess.Popen(
            [sys.executable, "-m", "signalstack.sink"],
            env=env,
            stdout=fh,
            stderr=fh,
            start_new_session=True,
        )


POLL_PERIOD_S = 0.005  # measurement resolution vs. load the poller itself puts on PostgreSQL
# Per symbol, an index range scan on trades_identity (symbol, ts, …) from the cursor. LATERAL,
# kept from being flattened by OFFSET 0, holds the plan to that whatever the statistics say: a
# plain join let the planner switch to a sequential scan of the whole chunk once autovacuum had
# analysed it (60 ms a poll and growing), making the poller the heaviest process on the machine.
POLL_SQL = (
    "SELECT t.symbol, t.trade_id, t.ts_event_ns, t.ts_ingest_ns, "
    "(extract(epoch FROM pg_xact_commit_timestamp(t.xmin)) * 1e9)::bigint "
    "FROM unnest(%s::text[], %s::bigint[], %s::timestamptz[]) AS c(sym, cur, cur_ts) "
    "CROSS JOIN LATERAL (SELECT symbol, trade_id, ts_event_ns, ts_ingest_ns, xmin FROM trades "
    "WHERE symbol = c.sym AND ts >= c.cur_ts AND ts_event_ns >= c.cur OFFSET 0) t"
)


class Poller:
    """Watches ``trades`` from its own connection and stamps each row with the wall-clock time
    of the first poll that returned it.

    Each symbol's trades are produced in ts_event order to one partition, and the sink makes
    batches durable in order, so per symbol they become visible in ts_event order: every poll
    asks, per symbol, for rows at or after the newest ts_event seen so far (an index range
    scan on trades_identity). Rows already seen are skipped by trade_id. The run's final count
    check (rows seen by the poller == rows in the table) proves no row slipped past a cursor.
    A row's visible time is taken when the poll's result has arrived: an upper bound, late by
    up to one poll period (5 ms) plus the query's own time (cycle times are reported)."""

    def __init__(self, dsn: str, symbols: tuple[str, ...], start_ns: int, n_warm: int) -> None:
        # JIT off for this connection: the cursors come from an array, so the planner takes
        # a third of each symbol's rows for `ts >= cursor`, and once autovacuum has analysed a
        # chunk of ~1M rows the estimate passes jit_above_cost. Each poll then JIT-compiled a
        # plan that returns ~60 rows (+8 ms a poll, and ~500 ms for the first compile, loading
        # LLVM): the 5 ms poller became a 13 ms one about 90 s into a run.
        self.conn = psycopg.connect(dsn, autocommit=True, options="-c jit=off")
        self.n_warm = n_warm
        self.symbols = list(symbols)
        self.cursor = dict.fromkeys(symbols, start_ns)
        self.seen: set[str] = set()
        self.latency_ms: list[float] = []
        self.produced_ns: list[int] = []
        self.commit_ms: list[float] = []  # diagnostics: produce → the server's commit timestamp
        self.cycles_ms: list[float] = []
        self.polls: list[tuple[int, int, int]] = []

    def poll(self) -> int:
        t0 = time.perf_counter()
        curs = [self.cursor[s] for s in self.symbols]
        # ts is ts_event cut to the µs: the µs floor of the cursor bounds it from below.
        lows = [pd.Timestamp(c // 1000, unit="us", tz="UTC").to_pydatetime() for c in curs]
        rows = self.conn.execute(POLL_SQL, (self.symbols, curs, lows)).fetchall()
        now = time.time_ns()
        new = 0
        for sym, trade_id, ts_event, ts_ingest, committed in rows:
            if trade_id in self.seen:
                continue
            self.seen.add(trade_id)
            new += 1
            if int(trade_id) >= self.n_warm:
                self.latency_ms.append((now - ts_ingest) / 1e6)
                self.produced_ns.append(ts_ingest)
                self.commit_ms.append((committed - ts_ingest) / 1e6)
            if ts_event > self.cursor[sym]:
                self.cursor[sym] = ts_event
        self.cycles_ms.append((time.perf_counter() - t0) * 1000)
        self.polls.append((now, len(rows), new))
        return new


def _histogram(body: str, name: str) -> dict[str, float]:
    """Count, mean and bucket-interpolated p50/p99 of a Prometheus histogram (all labels)."""
    buckets: dict[float, float] = {}
    total = count = 0.0
    for line in body.splitlines():
        if line.startswith(name + "_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_count"):
            count += float(line.rsplit(" ", 1)[1])
    out = {"count": count, "mean": total / count if count else float("nan")}
    bounds = sorted(buckets)
    for q in (0.5, 0.99):
        target, prev_b, prev_c = q * count, 0.0, 0.0
        out[f"p{int(q * 100)}"] = float("nan")
        for b in bounds:
            c = buckets[b]
            if c >= target and count:
                hi = b if b != float("inf") else prev_b
                frac = (target - prev_c) / (c - prev_c) if c > prev_c else 1.0
                out[f"p{int(q * 100)}"] = prev_b + (hi - prev_b) * frac
                break
            prev_b, prev_c = b, c
    return out


def latency(server: TimescaleServer, rate: int, seconds: float, warmup: float) -> dict[str, Any]:
    import httpx
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    from signalstack.devstack import free_port
    from signalstack.store.synthetic import SYMBOLS

    print(
        f"tick → row latency at {rate:,} trades/s for {seconds:.0f} s "
        f"(after {warmup:.0f} s of warm-up at the same rate):"
    )
    dsn = fresh_db(server)
    log = Path(tempfile.gettempdir()) / "signalstack-bench-store-sink.log"
    log.unlink(missing_ok=True)
    # The broker's partition logs on tmpfs: on a cluster it has its own volume, not the
    # database's disk. (Ext4 writeback threads were busy during some stalls here; moving the
    # logs alone did not measurably change the p99.)
    shm = Path("/dev/shm")
    with KafkaServer(log_root=shm if shm.is_dir() else None) as kafka:
        topic = "market.trades"
        admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
        new = [NewTopic(topic, num_partitions=6), NewTopic(topic + ".warmup", num_partitions=1)]
        for f in admin.create_topics(new).values():
            f.result(30)
        assert kafka.proc is not None
        warm = warm_broker(kafka.bootstrap, kafka.proc.pid)
        print(f"  broker JIT warm-up: {warm['broker_warmup_seconds']:.1f} s, compiler share "
              f"of a core in the last burst {warm['broker_warmup_jit_share']:.0%}")  # fmt: skip
        segments = warm_wal(dsn, int(rate * (warmup + seconds)))
        print(f"  WAL: {segments} segments made ready (recycled), as on a long-running server")
        port = free_port()
        sink = _sink_proc(kafka.bootstrap, topic, dsn, port, log)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).is_success:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            else:
                raise RuntimeError(f"sink not ready; see {log}")
            start_ns = time.time_ns()  # the producer stamps its trades from now on
            n_warm = int(rate * warmup)
            poller = Poller(dsn, SYMBOLS, start_ns - 10**9, n_warm)
            ctx = mp.get_context("spawn")
            ready = ctx.Event()
            prod = ctx.Process(
                target=_producer, args=(kafka.bootstrap, topic, rate, seconds, warmup, ready)
            )
            prod.start()
            expected = n_warm + int(rate * seconds)
            # The poller's stamps are the measurement: keep the garbage collector's full passes
            # off this process's start-up heap (pandas, psycopg, …), as the services do.
            tune_gc()
            deadline = time.monotonic() + seconds * 3 + 120
            while len(poller.seen) < expected and time.monotonic() < deadline:
                t0 = time.perf_counter()
                poller.poll()
                time.sleep(max(0.0, POLL_PERIOD_S - (time.perf_counter() - t0)))
            prod.join(60)
            # Stage histograms cover the whole run, warm-up included.
            body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        finally:
            sink.terminate()
            sink.wait(30)
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT count(*) FROM trades").fetchone()
            written = int(row[0]) if row else 0
    lat = np.asarray(poller.latency_ms) if poller.latency_ms else np.array([np.nan])
    if os.environ.get("BENCH_DEBUG"):
        np.savez(
            os.environ["BENCH_DEBUG"],
            lat=lat,
            produced=np.asarray(poller.produced_ns),
            polls=np.asarray(poller.polls),
            commit=np.asarray(poller.commit_ms),
        )
    cycles = np.asarray(poller.cycles_ms)
    # p99 per second of production: shows whether the tail is spread or a few stalls.
    if poller.produced_ns:
        sec = (np.asarray(poller.produced_ns) - min(poller.produced_ns)) // 10**9
        per_s = [float(np.percentile(lat[sec == k], 99)) for k in np.unique(sec)]
    else:
        per_s = []
    stages = {
        name: _histogram(body, f"signalstack_sink_{name}")
        for name in (
            "record_age_seconds",
            "decode_seconds",
            "queue_seconds",
            "write_latency_seconds",
            "batch_messages",
        )
    }
    res: dict[str, Any] = {
        **warm,
        "tick_to_row_p50_ms": float(np.percentile(lat, 50)),
        "tick_to_row_p99_ms": float(np.percentile(lat, 99)),
        "tick_to_row_max_ms": float(lat.max()),
        "tick_rate_per_s": float(rate),
        "tick_seconds": float(seconds),
        "tick_warmup_seconds": float(warmup),
        "tick_rows_measured": float(len(poller.latency_ms)),
        "tick_rows": float(written),
        "tick_rows_seen_by_poller": float(len(poller.seen)),
        "produce_to_commit_p50_ms": float(np.percentile(poller.commit_ms, 50)),
        "produce_to_commit_p99_ms": float(np.percentile(poller.commit_ms, 99)),
        "poll_cycle_p50_ms": float(np.percentile(cycles, 50)),
        "poll_cycle_p99_ms": float(np.percentile(cycles, 99)),
        "poll_cycle_max_ms": float(cycles.max()),
        # The measurement's own delay: the row's commit timestamp → the poll that saw it.
        "commit_to_seen_p99_ms": float(np.percentile(lat - np.asarray(poller.commit_ms), 99)),
        "sink_stages": stages,
        "tick_to_row_p99_ms_per_second": per_s,
    }
    print(
        f"  p50 {res['tick_to_row_p50_ms']:.1f} ms  p99 {res['tick_to_row_p99_ms']:.1f} ms  "
        f"max {res['tick_to_row_max_ms']:.1f} ms  rows {written:,}/{expected:,} "
        f"(poller saw {len(poller.seen):,}; poll cycle p50 {res['poll_cycle_p50_ms']:.2f} ms, "
        f"p99 {res['poll_cycle_p99_ms']:.2f} ms)"
    )
    for name, h in stages.items():
        scale = 1 if name == "batch_messages" else 1000
        print(
            f"  {name:<24} n={h['count']:>7,.0f}  mean {h['mean'] * scale:8.2f}  "
            f"p50 {h['p50'] * scale:8.2f}  p99 {h['p99'] * scale:8.2f}"
            + ("" if name == "batch_messages" else " ms")
        )
    print(
        f"  produce → COMMIT (server commit timestamp): p50 {res['produce_to_commit_p50_ms']:.1f}"
        f" ms  p99 {res['produce_to_commit_p99_ms']:.1f} ms; COMMIT → seen by the poller"
        f" p99 {res['commit_to_seen_p99_ms']:.1f} ms; longest poll"
        f" {res['poll_cycle_max_ms']:.0f} ms"
    )
    print("  p99 per second of production (ms):", " ".join(f"{v:.0f}" for v in per_s))
    if len(poller.seen) != written:
        raise RuntimeError(f"poller saw {len(poller.seen)} rows of {written}: measurement invalid")
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--baseline-rows", type=int, default=50_000)
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=20.0, help="s at --rate before measuring")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--only-latency", action="store_true", help="diagnostics; writes no JSON")
    args = ap.parse_args()
    result: dict[str, Any] = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": args.rows,
        "loadavg_start": list(os.getloadavg()),
    }
    # track_commit_timestamp (a production-safe setting, used by logical replication tooling)
    # lets the poller split its figure into produce → COMMIT and COMMIT → seen.
    with TimescaleServer(extra_conf={"track_commit_timestamp": "on"}) as server:
        if args.only_latency:
            result.update(latency(server, args.rate, args.seconds, args.warmup))
            print(json.dumps(result, indent=2))
            return
        result.update(throughput(server, args.rows, args.baseline_rows))
        result["loadavg_after_throughput"] = list(os.getloadavg())
        if not args.skip_latency:
            result.update(latency(server, args.rate, args.seconds, args.warmup))
    result["loadavg_end"] = list(os.getloadavg())
    result["writer_vs_raw"] = result["rows_per_s"] / result["raw_copy_rows_per_s"]
    result["writer_vs_raw_parallel"] = result["rows_per_s"] / result["raw_copy_parallel_rows_per_s"]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
