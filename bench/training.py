"""Training on the demo data: wall time of the three models and their quality beside baselines.

The demo's training step, timed: five simulated full sessions of the demo's six symbols (20,000
trades per symbol and session, seed 7, the sessions before the demo's) run through the local
stream engine into an embedded DuckDB store (outside the timed region), then ``run.train`` —
purged walk-forward evaluation of the three models (4 folds), their baselines, the exported
bundles with their parity checks, a local SQLite MLflow store (logging, registration, the gate).

``seconds_total``: the whole ``train`` call (budget 120 s on 2 cores); ``<model>.seconds``: that
model's walk-forward evaluation (its share of the total; the rest is MLflow and export).
Quality, on the holdout fold and in aggregate over the folds (``cv``), each beside the baseline
computed in the same run on the same rows: ``regime.balanced_accuracy`` /
``regime.baseline_balanced_accuracy`` (the best of majority, persistence and stratified random),
the same pair for ``direction``, and ``anomaly.precision_at_k`` /
``anomaly.baseline_precision_at_k`` (the z-score rule on returns and volume), k = the number of
labelled anomalies in the rows scored.

    .venv/bin/python bench/training.py [--days 5] [--trades-per-day 20000] [--seed 7]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from signalstack.config import MlflowSettings, Settings
from signalstack.marketdata.simulator import SimConfig
from signalstack.store.duckdb import DuckDBStore
from signalstack.training.run import train
from signalstack.training.sources import SimulatorSource

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 120.0


def _best_baseline(baselines: dict[str, dict[str, float]], metric: str) -> tuple[str, float]:
    vals = {b: m.get(metric, float("nan")) for b, m in baselines.items()}
    name = max(vals, key=lambda b: vals[b] if vals[b] == vals[b] else -1.0)
    return name, vals[name]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=5)
    ap.add_argument("--trades-per-day", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "training.json")
    args = ap.parse_args()
    symbols = SimConfig().symbols
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        store = DuckDBStore(str(Path(tmp) / "store.duckdb"))
        store.migrate()
        source = SimulatorSource(
            days=args.days, symbols=symbols, seed=args.seed, trades_per_day=args.trades_per_day,
            store=store, last_day=dt.date(2025, 11, 19),
        )  # fmt: skip
        t = time.perf_counter()
        data = source.data()
        simulate_s = time.perf_counter() - t
        settings = Settings(mlflow=MlflowSettings(model_prefix="bench-"))
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        try:
            t = time.perf_counter()
            result = train(settings, source, symbols, None, None, tracking_uri=uri, store=store)
            total = time.perf_counter() - t
        finally:
            store.close()
    out: dict[str, Any] = {
        "seconds_total": round(total, 2),
        "budget_seconds": BUDGET_S,
        "within_budget": total <= BUDGET_S,
        "data": {
            "sessions": [d.isoformat() for d in data.days],
            "symbols": list(symbols),
            "trades": data.trades,
            "rows": result.rows,
            "simulate_and_stream_seconds": round(simulate_s, 2),
        },
    }
    for name, m in result.models.items():
        ev = m.evaluation
        metric = "precision_at_k" if name == "anomaly" else "balanced_accuracy"
        bname, bval = _best_baseline(ev.holdout.baselines, metric)
        cv_name, cv_val = _best_baseline(ev.baseline_aggregate, metric)
        out[name] = {
            "kind": ev.kind,
            "seconds": round(ev.seconds, 2),
            metric: round(ev.holdout.metrics.get(metric, float("nan")), 4),
            f"baseline_{metric}": round(bval, 4),
            "baseline": bname,
            f"cv_{metric}": round(ev.aggregate.get(metric, float("nan")), 4),
            f"cv_baseline_{metric}": round(cv_val, 4),
            "cv_baseline": cv_name,
            "gate_metric": ev.primary,
            "promoted": bool(m.decision and m.decision.promote),
            "decision": m.decision.reason if m.decision else None,
        }
        print(f"{name:9s} {ev.kind:8s} {ev.seconds:6.1f} s  holdout {metric} "
              f"{out[name][metric]:.3f} vs {bname} {bval:.3f}; cv {out[name][f'cv_{metric}']:.3f} "
              f"vs {cv_name} {cv_val:.3f}")  # fmt: skip
    print(f"seconds_total {total:.1f} (budget {BUDGET_S:.0f})")
    out.update(
        machine=f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        date=dt.date.today().isoformat(),
        load_average_before=load_before,
        load_average=os.getloadavg()[0],
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
