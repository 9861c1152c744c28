"""``signalstack demo``: the pipeline on the embedded default — no cluster, no Docker, no API key.

Today it runs every stage that has landed: a seeded simulated session for several symbols →
the local stream engine (the same feature library the Spark job runs) → the embedded DuckDB store
→ point-in-time reads back from the store → training of the three models on simulated history
(purged walk-forward beside baselines, a local MLflow store, the champion gate) → a report
(markdown + JSON + plots) in ``--out``. Serving and drift join as their issues land.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from signalstack.config import Settings, StoreSettings
from signalstack.features.columns import FEATURE_COLUMNS

console = Console(stderr=True)


@dataclass
class DemoReport:
    seed: int
    session: str
    symbols: list[str]
    trades_simulated: int
    stages: dict[str, float] = field(default_factory=dict)
    engine: dict[str, int] = field(default_factory=dict)
    store_rows: dict[str, int] = field(default_factory=dict)
    feature_coverage: dict[str, float] = field(default_factory=dict)
    point_in_time_check: str = ""
    labelled_late: int = 0
    labelled_duplicates: int = 0
    training: dict[str, Any] = field(default_factory=dict)
    serving: dict[str, Any] = field(default_factory=dict)


def _chunks(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), size):
        yield frame.iloc[start : start + size].reset_index(drop=True)


def _plot(bars: pd.DataFrame, features: pd.DataFrame, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the inference image has no matplotlib; the report stays text-only
        return False
    symbols = sorted(bars["symbol"].unique())[:4]
    fig, axes = plt.subplots(len(symbols), 2, figsize=(13, 2.6 * len(symbols)), squeeze=False)
    for row, sym in zip(axes, symbols, strict=False):
        b = bars[bars["symbol"] == sym]
        f = features[features["symbol"] == sym]
        row[0].plot(b["ts"], b["close"], lw=0.8, label="close (1m bar)")
        row[0].plot(f["ts"], f["vwap_15m"], lw=0.8, label="vwap_15m")
        row[0].set_title(f"{sym}: price", fontsize=9)
        row[0].legend(fontsize=7)
        row[1].plot(f["ts"], f["realized_vol_5m"], lw=0.8, color="tab:red", label="realized_vol_5m")
        ax2 = row[1].twinx()
        ax2.bar(b["ts"], b["volume"], width=1 / 1440, alpha=0.3, color="tab:gray")
        row[1].set_title(f"{sym}: 5-minute realized volatility and volume", fontsize=9)
        row[1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def run(settings: Settings, *, seed: int = 7, out: Path = Path("demo-output"),
        trades_per_day: int = 60_000, train: bool = True,
        train_days: int = 5) -> DemoReport:  # fmt: skip
    from signalstack.engines.run import run as run_stream
    from signalstack.marketdata.simulator import SimConfig, simulate
    from signalstack.store import open_store

    out.mkdir(parents=True, exist_ok=True)
    db = out / "signalstack.duckdb"
    db.unlink(missing_ok=True)
    local = settings.model_copy(update={"store": StoreSettings(type="duckdb", duckdb_path=str(db))})
    symbols = tuple(settings.market.symbols)
    stages: dict[str, float] = {}

    t = time.perf_counter()
    with console.status("simulating a session"):
        market = simulate(SimConfig(seed=seed, symbols=symbols, trades_per_day=trades_per_day))
        frame = market.to_frame(labels=True)
    stages["simulate_s"] = time.perf_counter() - t
    session = dt.datetime.fromtimestamp(market.session_open_ns / 1e9, dt.UTC).date().isoformat()
    console.log(f"simulated {len(frame):,} trades for {len(symbols)} symbols on {session}")
    report = DemoReport(
        seed=seed,
        session=session,
        symbols=list(symbols),
        trades_simulated=len(frame),
        labelled_late=int(frame["is_late"].sum()),
        labelled_duplicates=int(frame["is_duplicate"].sum()),
    )
    trades = frame.drop(columns=["is_late", "is_duplicate", "anomaly", "regime"])

    t = time.perf_counter()
    with console.status("stream engine (local): dedup → 1-minute bars → features → DuckDB"):
        stats = run_stream(local, "local", source=_chunks(trades, 100_000))
    stages["stream_s"] = time.perf_counter() - t
    report.engine = asdict(stats)
    console.log(f"engine: {stats.bars_out:,} bars, {stats.features_out:,} feature rows, "
                f"{stats.late:,} late → DLQ, {stats.duplicates:,} duplicates dropped")  # fmt: skip

    t = time.perf_counter()
    store = open_store(local)
    try:
        report.store_rows = {tbl: store.count(tbl) for tbl in ("ohlcv_1m", "features", "dlq")}
        lo = pd.Timestamp(market.session_open_ns, tz="UTC")
        hi = lo + pd.Timedelta(hours=8)
        bars = store.bars(list(symbols), lo, hi)
        as_of = lo + pd.Timedelta(hours=3)
        frame_as_of = store.training_frame(list(symbols), lo, hi, as_of=as_of)
        features = store.training_frame(list(symbols), lo, hi, as_of=hi)
    finally:
        store.close()
    stages["read_back_s"] = time.perf_counter() - t
    if len(frame_as_of) and frame_as_of["ts"].max() > as_of:
        raise AssertionError("point-in-time read returned rows after as_of")
    report.point_in_time_check = (
        f"{len(frame_as_of):,} feature rows known at {as_of.isoformat()}, none later"
    )
    report.feature_coverage = {
        c: round(float(np.isfinite(features[c].to_numpy(dtype=float)).mean()), 4)
        for c in FEATURE_COLUMNS
    }
    if train:
        t = time.perf_counter()
        report.training = _train(local, out, symbols, seed, market.session_open_ns, train_days)
        stages["train_s"] = time.perf_counter() - t
        t = time.perf_counter()
        report.serving = _serve(local, out, symbols, market.session_open_ns)
        stages["serve_s"] = time.perf_counter() - t
    report.stages = {k: round(v, 3) for k, v in stages.items()}

    plotted = _plot(bars, features, out / "features.png")
    if report.training:
        _plot_training(report.training, out / "training.png")
    (out / "report.json").write_text(json.dumps(asdict(report), indent=2))
    (out / "report.md").write_text(_markdown(report, plotted))
    _print(report)
    console.log(
        f"report: {out / 'report.md'}" + (f", plot: {out / 'features.png'}" if plotted else "")
    )
    return report


def _train(
    settings: Settings, out: Path, symbols: tuple[str, ...], seed: int, session_open_ns: int,
    days: int,
) -> dict[str, Any]:  # fmt: skip
    """Simulated history (the ``days`` full sessions before the demo's) into the demo store →
    the three models, evaluated, logged to a local MLflow store in ``out`` and gated."""
    from signalstack.store import open_store
    from signalstack.training.cli import progress_display
    from signalstack.training.run import train
    from signalstack.training.sources import SimulatorSource

    mlflow_db = out / "mlflow.db"
    mlflow_db.unlink(missing_ok=True)  # each demo starts with no champion
    shutil.rmtree(out / "artifacts", ignore_errors=True)
    shutil.rmtree(out / "models", ignore_errors=True)
    session_day = dt.datetime.fromtimestamp(session_open_ns / 1e9, dt.UTC).date()
    store = open_store(settings)
    try:
        source = SimulatorSource(
            days=days, symbols=symbols, seed=seed, trades_per_day=20_000, store=store,
            last_day=session_day - dt.timedelta(days=1),
        )  # fmt: skip
        with console.status(f"simulating {days} sessions of history for training"):
            data = source.data()
        first, last = data.days[0], data.days[-1]
        console.log(f"training history: {len(data.days)} sessions {first} … {last}, "
                    f"{data.trades:,} trades")  # fmt: skip
        with progress_display() as progress:
            result = train(
                settings, source, symbols, None, None, tracking_uri=f"sqlite:///{mlflow_db}",
                experiment="signalstack-demo", store=store, progress=progress,
                work_dir=out / "models",
            )  # fmt: skip
    finally:
        store.close()
    summary = result.summary()
    summary["tracking_uri"] = f"sqlite:///{mlflow_db}"
    summary["history_days"] = [d.isoformat() for d in data.days]
    return summary


def _serve(
    settings: Settings, out: Path, symbols: tuple[str, ...], session_open_ns: int
) -> dict[str, Any]:
    """``signalstack serve`` on localhost over the demo's store and this run's bundles
    (``demo-output/models``), called over HTTP: each model by symbol (``POST /predict/*``,
    point in time in the demo's session) and through the Open Inference Protocol v2
    (``/v2/models/{name}/infer``), with the latency of sequential calls."""
    import socket
    import subprocess
    import sys

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {
        **os.environ,
        "SERVING_MODEL_DIR": str(out / "models"),
        "SERVING_HOST": "127.0.0.1",
        "SERVING_PORT": str(port),
        "STORE_TYPE": "duckdb",
        "STORE_DUCKDB_PATH": str(settings.store.duckdb_path),
        "LOG_LEVEL": "WARNING",
        # live predictions: the API reads the feature log the local engine writes below
        "SERVING_FEED": "local",
        "SERVING_FEED_DIR": str(out / "feature-log"),
    }
    env.pop("SERVING_API_TOKEN", None)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    as_of = pd.Timestamp(session_open_ns, tz="UTC") + pd.Timedelta(hours=3)
    sym = symbols[0]
    # the OIP request's values, read now: the server holds the embedded store once it runs
    from signalstack.inference.inputs import input_spec

    feats = _row_features(settings, sym, as_of, list(input_spec(1).feature_columns))
    log = (out / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "signalstack", "serve"], env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    result: dict[str, Any] = {"url": base, "calls": {}}
    try:
        with (
            httpx.Client(base_url=base, timeout=10.0) as client,
            console.status("inference API: waiting for the models"),
        ):
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"signalstack serve exited; see {out / 'serve.log'}")
                try:
                    if client.get("/v2/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"models not ready in 120 s; see {out / 'serve.log'}")
                time.sleep(0.3)
            for name in ("regime", "direction", "anomaly"):
                body = {"symbol": sym, "as_of": as_of.isoformat()}
                answer = client.post(f"/predict/{name}", json=body)
                answer.raise_for_status()
                lat = []
                for _ in range(100):
                    t = time.perf_counter()
                    client.post(f"/predict/{name}", json=body).raise_for_status()
                    lat.append((time.perf_counter() - t) * 1e3)
                result["calls"][f"POST /predict/{name}"] = {
                    "request": body,
                    "answer": answer.json(),
                    "p50_ms": round(float(np.percentile(lat, 50)), 2),
                    "p99_ms": round(float(np.percentile(lat, 99)), 2),
                }
            # the same regime row through the Open Inference Protocol v2: one tensor per feature
            row = client.post("/predict/regime", json={"symbol": sym, "as_of": as_of.isoformat()})
            infer = {
                "inputs": [
                    {"name": k, "shape": [1], "datatype": "FP64", "data": [v]}
                    for k, v in feats.items()
                ]
            }
            answer = client.post("/v2/models/regime/infer", json=infer)
            answer.raise_for_status()
            result["calls"]["POST /v2/models/regime/infer"] = {
                "request": infer,
                "answer": answer.json(),
                "max_abs_diff_from_predict": float(
                    np.max(np.abs(np.subtract(_probs(answer.json()), _probs_of(row.json()))))
                ),
            }
        with console.status("WebSocket: live predictions of the next session's first minutes"):
            result["websocket"] = _live(base, out / "feature-log", symbols, session_open_ns)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    for call, r in result["calls"].items():
        if "p50_ms" in r:
            console.log(f"{call}: {r['answer'].get('prediction')} (p50 {r['p50_ms']} ms)")
    return result


def _live(
    base: str, log_dir: Path, symbols: tuple[str, ...], session_open_ns: int, minutes: int = 10
) -> dict[str, Any]:
    """``WS /ws/predictions``: subscribe to every symbol, run the local engine over the first
    ``minutes`` of the next simulated session, one batch of trades per minute (one every
    0.25 s: a live stream, sped up), publishing its feature rows to the API's feature log;
    record what arrives and the latency from a row's publication to its prediction on the
    socket."""
    import threading

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from signalstack.engines.base import ListSink
    from signalstack.engines.local import LocalEngine
    from signalstack.marketdata.simulator import SimConfig, simulate
    from signalstack.serving.feeds import FeatureLogPublisher

    day = dt.datetime.fromtimestamp(session_open_ns / 1e9, dt.UTC).date() + dt.timedelta(days=1)
    while day.weekday() >= 5:  # the next weekday (the simulator's sessions are weekdays)
        day += dt.timedelta(days=1)
    market = simulate(SimConfig(seed=1, symbols=symbols, trades_per_day=20_000, date=day))
    trades = market.to_frame(labels=False)
    minute = (trades["ts_event"].to_numpy() - market.session_open_ns) // 60_000_000_000
    published: dict[int, int] = {}  # a row's ts (ns) → when it was published (ns)

    class TimedLog(FeatureLogPublisher):
        def publish(self, features: pd.DataFrame) -> int:
            n = super().publish(features)
            now = time.time_ns()
            for ts in pd.DatetimeIndex(features["ts"]).asi8.tolist():
                published.setdefault(int(ts), now)
            return n

    received: list[tuple[int, dict[str, Any]]] = []
    url = base.replace("http://", "ws://") + "/ws/predictions?symbols=*"
    with connect(url, open_timeout=30) as ws:
        ack = json.loads(ws.recv(timeout=30))

        def read() -> None:
            try:
                while True:
                    msg = ws.recv()
                    received.append((time.time_ns(), json.loads(msg)))
            except ConnectionClosed:
                return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()

        def batches() -> Iterator[pd.DataFrame]:  # a minute of trades every 0.25 s
            for m in range(minutes + 1):
                if m:
                    time.sleep(0.25)
                yield trades[minute == m]

        publisher = TimedLog(log_dir)
        engine = LocalEngine(ListSink(), publisher=publisher, source=batches())
        stats = engine.run(flush_at_end=True)
        want = stats.features_out * len(ack["subscribed"]["models"])
        deadline = time.monotonic() + 60
        while len(received) < want and time.monotonic() < deadline:
            time.sleep(0.05)
    reader.join(10)
    lat = [(at - published[m["ts"]]) / 1e6 for at, m in received if m["ts"] in published]
    by_model: dict[str, int] = {}
    for _, m in received:
        by_model[m["model_name"]] = by_model.get(m["model_name"], 0) + 1
    return {
        "url": url,
        "subscribed": ack["subscribed"],
        "session": day.isoformat(),
        "minutes": minutes,
        "feature_rows": stats.features_out,
        "predictions": len(received),
        "expected": want,
        "by_model": by_model,
        "latency_ms": {
            "p50": round(float(np.percentile(lat, 50)), 2) if lat else None,
            "max": round(float(np.max(lat)), 2) if lat else None,
        },
        "example": received[0][1] if received else None,
    }


def _row_features(
    settings: Settings, symbol: str, as_of: pd.Timestamp, names: list[str]
) -> dict[str, float | None]:
    """The symbol's feature row at ``as_of`` from the demo store (the OIP request's values)."""
    from signalstack.store import open_store

    store = open_store(settings)
    try:
        end = as_of + pd.Timedelta(minutes=1)  # the range is half-open; as_of keeps it ≤ as_of
        rows = store.training_frame([symbol], as_of - pd.Timedelta(hours=1), end, as_of=as_of)
    finally:
        store.close()
    last = rows.iloc[-1]
    return {n: (None if pd.isna(last[n]) else float(last[n])) for n in names if n in rows.columns}


def _probs(infer: dict[str, Any]) -> list[float]:
    out = next(o for o in infer["outputs"] if o["name"] == "probabilities")
    return [float(v) for v in out["data"]]


def _probs_of(predict: dict[str, Any]) -> list[float]:
    return [float(v) for v in predict["probabilities"].values()]


def _plot_training(t: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    models = t["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.4), squeeze=False)
    for ax, (name, m) in zip(axes[0], models.items(), strict=False):
        metric = m["metric"]
        labels = ["model", *sorted(m["baselines_holdout"])]
        values = [m["holdout"].get(metric, np.nan)] + [
            m["baselines_holdout"][b].get(metric, np.nan) for b in labels[1:]
        ]
        colors = ["tab:blue"] + ["tab:gray"] * (len(labels) - 1)
        ax.bar(labels, values, color=colors)
        decision = m["decision"] or {}
        verdict = "promoted" if decision.get("promote") else "refused"
        ax.set_title(f"{name} ({m['kind']}): {verdict}", fontsize=9)
        ax.set_ylabel(f"holdout {metric}", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def _markdown(r: DemoReport, plotted: bool) -> str:
    lines = [
        "# SignalStack demo report",
        "",
        f"Seed {r.seed}, simulated XNYS session {r.session}, symbols {', '.join(r.symbols)}.",
        "",
        "| stage | seconds |",
        "|---|---:|",
        *[f"| {k.removesuffix('_s')} | {v:.2f} |" for k, v in r.stages.items()],
        "",
        f"- trades simulated: {r.trades_simulated:,} (labelled late: {r.labelled_late:,}, "
        f"labelled duplicates: {r.labelled_duplicates:,})",
        f"- engine: {r.engine}",
        f"- rows in the store: {r.store_rows}",
        f"- point in time: {r.point_in_time_check}",
        "",
        "| feature | share of rows defined |",
        "|---|---:|",
        *[f"| {k} | {v:.1%} |" for k, v in r.feature_coverage.items()],
    ]
    if plotted:
        lines += ["", "![features](features.png)"]
    if r.training:
        lines += ["", *_training_markdown(r.training)]
    if r.serving:
        lines += ["", *_serving_markdown(r.serving)]
    return "\n".join(lines) + "\n"


def _serving_markdown(sv: dict[str, Any]) -> list[str]:
    lines = [
        "## Serving",
        "",
        f"`signalstack serve` on {sv['url']} with this run's bundles (`demo-output/models`, "
        "ONNX Runtime, no torch) over the demo's store. Each model by symbol, point in time "
        "(100 sequential calls each from this process):",
        "",
        "| call | answer | p50 ms | p99 ms |",
        "|---|---|---:|---:|",
    ]
    for call, c in sv["calls"].items():
        if "p50_ms" not in c:
            continue
        a = c["answer"]
        what = a.get("prediction")
        if "score" in a:
            what = f"score {a['score']:.3f}, anomaly: {a.get('is_anomaly')}"
        lines.append(f"| `{call}` `{c['request']}` | {what} (v {a.get('model_version')}, "
                     f"features at {a.get('ts')}) | {c['p50_ms']} | {c['p99_ms']} |")  # fmt: skip
    oip = sv["calls"].get("POST /v2/models/regime/infer")
    if oip:
        lines += [
            "",
            "The same regime row through the Open Inference Protocol v2 "
            "(`/v2/models/regime/infer`, one FP64 tensor per feature): probabilities within "
            f"{oip['max_abs_diff_from_predict']:.1e} of `/predict/regime`.",
        ]
    live = sv.get("websocket")
    if live:
        lat = live["latency_ms"]
        lines += [
            "",
            f"Live over `WS /ws/predictions` (every symbol, models "
            f"{', '.join(live['subscribed']['models'])}): the local engine ran the first "
            f"{live['minutes']} minutes of the next session ({live['session']}) in one-minute "
            f"batches (one every 0.25 s) and published {live['feature_rows']} feature rows to "
            f"the API's feature log; {live['predictions']} of {live['expected']} predictions "
            f"arrived ({', '.join(f'{k} {v}' for k, v in sorted(live['by_model'].items()))}), "
            f"p50 {lat['p50']} ms and at most {lat['max']} ms from a row's publication to its "
            "prediction on the socket.",
        ]
    return lines


def _training_markdown(t: dict[str, Any]) -> list[str]:
    lines = [
        "## Training",
        "",
        f"{t['rows']:,} feature rows of {len(t['history_days'])} simulated sessions "
        f"({t['history_days'][0]} … {t['history_days'][-1]}), feature set "
        f"{t['feature_set_version']}, dataset digest `{t['dataset_digest']}`; purged "
        f"walk-forward folds, the last one the holdout. MLflow: `{t['tracking_uri']}` "
        f"(`mlflow ui --backend-store-uri {t['tracking_uri']}`).",
        "",
        "| model | metric | cv | holdout | baselines (holdout) | decision |",
        "|---|---|---:|---:|---|---|",
    ]
    for name, m in t["models"].items():
        metric = m["metric"]
        bases = ", ".join(
            f"{b} {v.get(metric, float('nan')):.3f}"
            for b, v in sorted(m["baselines_holdout"].items())
        )
        d = m["decision"] or {}
        verdict = f"{'promoted' if d.get('promote') else 'refused'} v{m['version']}"
        lines.append(
            f"| {name} ({m['kind']}) | {metric} | {m['cv'].get(metric, float('nan')):.3f} | "
            f"{m['holdout'].get(metric, float('nan')):.3f} | {bases} | {verdict} |"
        )
    lines += ["", "Decisions:", ""]
    lines += [
        f"- **{n}**: {(m['decision'] or {}).get('reason', '')}" for n, m in t["models"].items()
    ]
    lines += ["", "![training](training.png)"]
    return lines


def _print(r: DemoReport) -> None:
    table = Table(title="SignalStack demo", show_header=True)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("trades simulated", f"{r.trades_simulated:,}")
    for k in ("trades_in", "duplicates", "late", "bars_out", "features_out"):
        table.add_row(f"engine {k}", f"{r.engine.get(k, 0):,}")
    for k, v in r.store_rows.items():
        table.add_row(f"store {k} rows", f"{v:,}")
    for name, m in r.training.get("models", {}).items():
        d = m["decision"] or {}
        metric = m["metric"]
        table.add_row(
            f"{name} holdout {metric}",
            f"{m['holdout'].get(metric, float('nan')):.3f} "
            f"({'promoted' if d.get('promote') else 'refused'})",
        )
    for call, c in r.serving.get("calls", {}).items():
        if "p50_ms" in c:
            a = c["answer"]
            what = a["prediction"] if "prediction" in a else f"score {a.get('score', 0):.3f}"
            table.add_row(call, f"{what} (p50 {c['p50_ms']} ms)")
    live = r.serving.get("websocket")
    if live:
        table.add_row("WS /ws/predictions", f"{live['predictions']}/{live['expected']} "
                      f"(p50 {live['latency_ms']['p50']} ms)")  # fmt: skip
    table.add_row("total seconds", f"{sum(r.stages.values()):.1f}")
    console.print(table)


def as_dict(r: DemoReport) -> dict[str, Any]:
    return asdict(r)
