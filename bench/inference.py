"""The inference API under load: 1,000 requests/s per model to one uvicorn worker.

Models: the three trained on simulated sessions (``training.run.train``: three sessions of
three symbols; their bundles served from a directory, ``SERVING_MODEL_DIR``). Requests:
``POST /predict/{regime,anomaly}`` with one explicit feature row, ``POST /predict/direction``
with a symbol's last 30 rows (the LSTM's sequence) — rows of the simulated sessions, cycled.

A load generator in a separate process (asyncio + httpx, keep-alive connections) sends an
**open-loop** schedule — request *i* is due at ``t0 + i / rate`` whatever earlier answers did —
and each latency is measured from the request's *due* time to its answer, so a server falling
behind shows in the latency instead of hiding in a slower rate (no coordinated omission).
``--seconds`` (default 30) per model; the first second is a warm-up, not counted. The
generator writes raw HTTP/1.1 on 64 keep-alive connections (requests encoded up front), so
its own cost per request is tens of microseconds. Figures:
``<model>.p50_ms``, ``p99_ms``, ``p999_ms``, ``achieved_rps``, errors; ``<model>.in_process_us``
p50/p99 of ``Bundle.predict_last`` alone (features → inputs → scaler → ONNX) in this process,
to show where the time goes (the rest is HTTP, JSON and FastAPI).

Requests still unanswered ``DRAIN_S`` (20 s) after the last was sent are counted at the latency
they had reached then (``censored``: a lower bound). Baseline in the same run (for
``--baseline-seconds``, 10): the same models served the naive way — a FastAPI endpoint that calls
the training-side model per request (xgboost ``predict_proba``, scikit-learn ``score_samples``,
torch ``forward``) — under the same load; ``<model>.baseline_p99_ms`` and the ratio.

    .venv/bin/python bench/inference.py [--rate 1000] [--seconds 30] [--models regime,direction]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import pickle
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KIND = {"regime": "xgboost", "anomaly": "iforest", "direction": "lstm"}
BUDGET_P99_MS = {"regime": 3.0, "anomaly": 3.0, "direction": 5.0}
SEQ = 30
DRAIN_S = 20.0  # after the last request is sent, how long to wait for the answers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- models and request bodies ------------------------------------------------------------------
def build(work: Path) -> dict[str, Any]:
    """Train the three models; keep their bundles (served) and training-side objects (naive)."""
    from signalstack.config import MlflowSettings, Settings, TrainingSettings
    from signalstack.training.run import train
    from signalstack.training.sources import SimulatorSource

    symbols = ("AAPL", "MSFT", "NVDA")
    source = SimulatorSource(days=3, symbols=symbols, seed=7, trades_per_day=10_000)
    settings = Settings(
        training=TrainingSettings(sequence_length=SEQ), mlflow=MlflowSettings(model_prefix="bench-")
    )
    result = train(
        settings, source, symbols, None, None, tracking_uri=f"sqlite:///{work / 'mlflow.db'}",
        work_dir=work / "bundles",
    )  # fmt: skip
    frame = source.frame(symbols, None, None, labels=_labels(), sessions=_sessions())
    source.close()
    naive = {
        name: {
            "kind": m.evaluation.kind,
            "model": m.evaluation.holdout.model,
            "scaler": m.evaluation.holdout.scaler,
        }
        for name, m in result.models.items()
    }
    (work / "naive.pkl").write_bytes(pickle.dumps(naive))
    from signalstack.inference.inputs import input_spec

    cols = list(input_spec(1).feature_columns)
    rows = [
        {c: (None if not np.isfinite(v) else float(v)) for c, v in zip(cols, r, strict=True)}
        for r in frame[cols].to_numpy(dtype=np.float64)
    ]
    # one symbol's session rows in order: windows of SEQ consecutive rows for the LSTM
    bodies: dict[str, list[dict[str, Any]]] = {"regime": [], "anomaly": [], "direction": []}
    for i in range(SEQ, len(rows), 7):
        if frame["session"].iloc[i - SEQ] != frame["session"].iloc[i - 1]:
            continue
        bodies["regime"].append({"features": rows[i - 1]})
        bodies["anomaly"].append({"features": rows[i - 1]})
        bodies["direction"].append({"features": rows[i - SEQ : i]})
    return bodies


def _labels() -> Any:
    from signalstack.training.frames import LabelSpec

    return LabelSpec()


def _sessions() -> Any:
    from signalstack.features.sessions import session_index

    return session_index()


def in_process(work: Path, bodies: dict[str, list[dict[str, Any]]], calls: int = 2000) -> dict[
    str, dict[str, float]
]:  # fmt: skip
    import pandas as pd

    from signalstack.inference.bundle import load_bundle

    out: dict[str, dict[str, float]] = {}
    for name, reqs in bodies.items():
        bundle = load_bundle(work / "bundles" / name)
        frames = []
        for b in reqs[:200]:
            f = b["features"]
            frames.append(pd.DataFrame(f if isinstance(f, list) else [f], dtype="float64"))
        lat = []
        for i in range(calls):
            t = time.perf_counter()
            bundle.predict_last(frames[i % len(frames)])
            lat.append(time.perf_counter() - t)
        a = np.asarray(lat[100:]) * 1e6
        out[name] = {"p50_us": round(float(np.percentile(a, 50)), 1),
                     "p99_us": round(float(np.percentile(a, 99)), 1)}  # fmt: skip
    return out


# ---- the naive server ---------------------------------------------------------------------------
def naive_app(pkl: Path) -> Any:
    """A FastAPI app calling the training-side models per request (the baseline)."""
    import pandas as pd
    from fastapi import FastAPI

    from signalstack.inference.inputs import input_spec, sequences

    models = pickle.loads(pkl.read_bytes())
    spec = input_spec(1)
    app = FastAPI()

    @app.post("/predict/{name}")
    def predict(name: str, body: dict[str, Any]) -> dict[str, Any]:
        m = models[name]
        f = body["features"]
        frame = pd.DataFrame(f if isinstance(f, list) else [f], dtype="float64")
        x = m["scaler"].transform(spec.transform(frame))
        if m["kind"] == "xgboost":
            return {"probabilities": m["model"].predict_proba(x[-1:]).tolist()}
        if m["kind"] == "iforest":
            return {"score": (-m["model"].score_samples(x[-1:])).tolist()}
        import torch

        seq = sequences(x, np.zeros(len(x)), SEQ, pad=m["scaler"].missing_row())[-1:]
        with torch.no_grad():
            p = torch.softmax(m["model"](torch.from_numpy(seq)), dim=1).numpy()
        return {"probabilities": p.tolist()}

    return app


def run_naive(pkl: Path, port: int) -> None:
    import torch
    import uvicorn

    torch.set_num_threads(1)
    uvicorn.run(naive_app(pkl), host="127.0.0.1", port=port, log_level="warning")


def start_server(kind: str, work: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SERVING_MODEL_DIR": str(work / "bundles"),
        "SERVING_PORT": str(port),
        "STORE_TYPE": "duckdb",
        "STORE_DUCKDB_PATH": str(work / "serve.duckdb"),
        "LOG_LEVEL": "WARNING",
        "OMP_NUM_THREADS": "1",
    }
    if kind == "signalstack":
        cmd = [sys.executable, "-m", "signalstack", "serve"]
    else:
        cmd = [sys.executable, __file__, "--naive-server", str(port), "--work", str(work)]
    log = (work / f"{kind}-server.log").open("wb")  # a file, never a pipe nobody reads
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (work / f"{kind}-server.log").read_text()[-2000:]
            raise RuntimeError(f"{kind} server exited: {tail}")
        try:
            path = "/v2/health/ready" if kind == "signalstack" else "/docs"
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"{kind} server not ready in 120 s")


# ---- the load generator (its own process) -------------------------------------------------------
async def _load(port: int, name: str, bodies: list[bytes], rate: float, seconds: float) -> dict[
    str, Any
]:  # fmt: skip
    """Open loop over raw keep-alive HTTP/1.1 connections (asyncio streams, requests encoded
    up front): the generator's own cost per request is tens of microseconds, so it is not what
    is measured (an httpx client spent ~6 ms of CPU per request here and set the pace)."""
    n = int(rate * seconds)
    reqs = [
        (
            f"POST /predict/{name} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n"
        ).encode()
        + b
        for b in bodies
    ]
    lat = np.full(n, np.nan)
    status: dict[int, int] = {}
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    conns = 64

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while (item := await queue.get()) is not None:
                i, due = item
                writer.write(reqs[i % len(reqs)])
                head = await reader.readuntil(b"\r\n\r\n")
                code = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                status[code] = status.get(code, 0) + 1
                lat[i] = loop.time() - due
        finally:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(conns)]
    t0 = loop.time() + 0.2
    for i in range(n):
        due = t0 + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((i, due))
    sent_s = loop.time() - t0
    for _ in workers:
        queue.put_nowait(None)
    # a server that cannot keep up would take minutes to drain: wait DRAIN_S at most, then
    # count every unanswered request at the latency it had reached (a lower bound: censored)
    _, pending = await asyncio.wait(workers, timeout=DRAIN_S)
    cutoff = loop.time()
    for w in pending:
        w.cancel()
    unanswered = np.flatnonzero(~np.isfinite(lat))
    lat[unanswered] = cutoff - (t0 + unanswered / rate)
    warm = int(rate)  # the first second is warm-up
    ok = lat[warm:] * 1e3
    return {
        "requests": n,
        "answered": n - len(unanswered),
        "censored": len(unanswered),
        "status": status,
        "achieved_rps": round(n / sent_s, 1),
        "p50_ms": round(float(np.percentile(ok, 50)), 3),
        "p99_ms": round(float(np.percentile(ok, 99)), 3),
        "p999_ms": round(float(np.percentile(ok, 99.9)), 3),
        "max_ms": round(float(ok.max()), 3),
    }


def load_process(port: int, name: str, bodies_file: Path, rate: float, seconds: float) -> dict[
    str, Any
]:  # fmt: skip
    """Run the load generator in a separate process; its JSON result."""
    res = subprocess.run(
        [sys.executable, __file__, "--load", str(port), name, str(bodies_file), str(rate),
         str(seconds)],
        capture_output=True, text=True, check=True, timeout=seconds + DRAIN_S + 120,
    )  # fmt: skip
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--models", default="regime,anomaly,direction")
    ap.add_argument("--baseline-seconds", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "inference.json")
    ap.add_argument("--naive-server", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--load", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.naive_server:
        run_naive(args.work / "naive.pkl", args.naive_server)
        return
    if args.load:
        port, name, path, rate, seconds = args.load
        raw = [json.dumps(b).encode() for b in json.loads(Path(path).read_text())]
        print(json.dumps(asyncio.run(_load(int(port), name, raw, float(rate), float(seconds)))))
        return

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    load_before = os.getloadavg()[0]
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        work = Path(tmp)
        print("training the three models on simulated sessions …", flush=True)
        bodies = build(work)
        for name in names:
            (work / f"{name}.json").write_text(json.dumps(bodies[name]))
        inproc = in_process(work, {n: bodies[n] for n in names})
        for server in ("signalstack", "naive"):
            port = free_port()
            proc = start_server(server, work, port)
            try:
                for name in names:
                    secs = args.seconds if server == "signalstack" else args.baseline_seconds
                    r = load_process(port, name, work / f"{name}.json", args.rate, secs)
                    print(f"{server:11s} {name:9s} {r['achieved_rps']:7.1f} req/s  p50 "
                          f"{r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  p99.9 "
                          f"{r['p999_ms']:.2f} ms  status {r['status']}", flush=True)  # fmt: skip
                    key = KIND[name] if server == "signalstack" else f"baseline_{KIND[name]}"
                    result[key] = r
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    for name in names:
        ours, base = result[KIND[name]], result[f"baseline_{KIND[name]}"]
        ours["in_process_us"] = inproc[name]
        ours["budget_p99_ms"] = BUDGET_P99_MS[name]
        ours["within_budget"] = ours["p99_ms"] <= BUDGET_P99_MS[name]
        ours["baseline_p99_ms"] = base["p99_ms"]
        ours["baseline_over_ours_p99"] = round(base["p99_ms"] / ours["p99_ms"], 2)
    result.update(
        rate=args.rate,
        seconds=args.seconds,
        baseline_seconds=args.baseline_seconds,
        drain_s=DRAIN_S,
        route="POST /predict/{model} with explicit features (1 row; the LSTM 30 rows)",
        server="signalstack serve: one uvicorn worker, bundles from SERVING_MODEL_DIR",
        baseline="a FastAPI endpoint calling the training-side model per request, one worker",
        machine=f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        date=dt.date.today().isoformat(),
        load_average_before=load_before,
        load_average=os.getloadavg()[0],
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
