"""The ``signalstack train`` command: arguments → a data source → :func:`run.train` → a summary.

Exit status: 0 when at least one champion moved, :data:`EXIT_KEPT` (6) when training and
evaluation succeeded but every champion stayed (a CronJob can tell "nothing better" from a
failure), 2 for bad arguments, 1 for any other failure.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from signalstack.config import Settings, split_symbols
from signalstack.errors import SignalStackError
from signalstack.training.models import ALIASES, MODELS
from signalstack.training.run import TrainResult, train

EXIT_KEPT: Final = 6
console = Console(stderr=True)


class TrainingError(SignalStackError):
    exit_code = 2


def parse_models(value: str) -> tuple[str, ...]:
    """``all`` or a comma list of model names (regime, direction, anomaly) or kinds (xgboost,
    lstm, iforest)."""
    names: list[str] = []
    for part in (p.strip().lower() for p in value.split(",") if p.strip()):
        name = ALIASES.get(part, part)
        if name == "all":
            return MODELS
        if name not in MODELS:
            raise TrainingError(
                f"--model {part!r}: expected all, xgboost|regime, lstm|direction or iforest|anomaly"
            )
        if name not in names:
            names.append(name)
    if not names:
        raise TrainingError("--model is empty")
    return tuple(n for n in MODELS if n in names)


def _when(value: str | None, name: str) -> pd.Timestamp | None:
    if not value:
        return None
    try:
        ts = pd.Timestamp(value)
    except ValueError as err:
        raise TrainingError(f"--{name} must be a date or ISO 8601 time, got {value!r}") from err
    return (
        ts.tz_convert("UTC") if ts.tzinfo else ts.tz_localize("America/New_York").tz_convert("UTC")
    )


@contextmanager
def progress_display(enabled: bool = True) -> Iterator[Any]:
    """A rich progress display: one bar per model's folds, one for the LSTM's epochs."""
    if not enabled:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        tasks: dict[tuple[str, str], Any] = {}

        def update(model: str, stage: str, done: int, total: int) -> None:
            key = (model, stage)
            if key not in tasks:
                label = f"{model}: {'walk-forward folds' if stage == 'fold' else 'epochs'}"
                tasks[key] = bar.add_task(label, total=total)
            if stage == "epoch" and done <= 1:
                bar.reset(tasks[key], total=total)
            bar.update(tasks[key], completed=done, total=total)

        yield update


def summary_table(result: TrainResult) -> Table:
    t = Table(title=f"training run {result.run_id[:8]}: {result.source}, {result.rows:,} rows, "
              f"feature set {result.feature_set_version}")  # fmt: skip
    t.add_column("model")
    t.add_column("metric")
    for col in ("cv", "holdout", "best baseline", "champion"):
        t.add_column(col, justify="right")
    t.add_column("decision")
    for name, m in result.models.items():
        ev = m.evaluation
        metric = ev.primary
        hold = ev.holdout.metrics.get(metric, float("nan"))
        cv = ev.aggregate.get(metric, float("nan"))
        base = {b: v.get(metric, float("nan")) for b, v in ev.holdout.baselines.items()}
        best = max(base, key=lambda b: -1.0 if base[b] != base[b] else base[b])
        champ = m.champion_metrics.get(metric)
        d = m.decision
        verdict = "-" if d is None else (
            f"promoted v{m.version}" if d.promote else f"refused v{m.version}"
        )  # fmt: skip
        t.add_row(
            f"{name} ({ev.kind})", metric, f"{cv:.3f}", f"{hold:.3f}",
            f"{base[best]:.3f} {best}", "-" if champ is None else f"{champ:.3f}", verdict,
        )  # fmt: skip
    return t


def run(
    settings: Settings,
    *,
    symbols: str | None,
    start: str | None,
    end: str | None,
    model: str,
    data_source: str,
    experiment: str | None,
    days: int,
    trades_per_day: int,
    random_walk: bool,
    summary_json: Path | None = None,
    show_progress: bool = True,
) -> int:
    """Train and return the exit status (0 a champion moved, 6 every champion stayed)."""
    from signalstack.store import open_store
    from signalstack.training import sources

    names = parse_models(model)
    syms = split_symbols(symbols) if symbols else tuple(settings.market.symbols)
    if not syms:
        raise TrainingError("no symbols: pass --symbols or set MARKET_SYMBOLS")
    lo, hi = _when(start, "start"), _when(end, "end")
    if lo is not None and hi is not None and hi <= lo:
        raise TrainingError(f"--end {end} is not after --start {start}")
    store = open_store(settings)
    src: Any = None
    try:
        if data_source == "simulator":
            last = (hi - pd.Timedelta(days=1)).date() if hi is not None else dt.date(2025, 11, 20)
            src = sources.SimulatorSource(
                days=days, symbols=syms, seed=settings.training.seed,
                trades_per_day=trades_per_day, random_walk=random_walk, last_day=last,
            )  # fmt: skip
        elif data_source in ("store", "yfinance"):
            if lo is None or hi is None:
                raise TrainingError(f"--data-source {data_source} needs --start and --end")
            src = sources.StoreSource(store) if data_source == "store" else (
                sources.YFinanceTrainingSource()
            )  # fmt: skip
        else:
            raise TrainingError(f"--data-source {data_source!r}: store, simulator or yfinance")
        with progress_display(show_progress) as progress:
            try:
                result = train(
                    settings, src, syms, lo, hi, models=names, experiment=experiment,
                    store=store, progress=progress,
                )  # fmt: skip
            except (ValueError, RuntimeError) as err:  # no data, too few rows for the folds…
                raise TrainingError(str(err)) from err
    finally:
        if src is not None:
            src.close()
        store.close()
    Console().print(summary_table(result))
    for name, m in result.models.items():
        if m.decision is not None:
            console.print(f"[bold]{name}[/bold]: {m.decision.reason}")
    if summary_json is not None:
        summary_json.write_text(json.dumps(result.summary(), indent=1, default=str))
    return 0 if result.promoted else EXIT_KEPT


__all__ = ["EXIT_KEPT", "TrainingError", "parse_models", "run", "summary_table"]
