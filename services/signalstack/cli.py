"""The ``signalstack`` command line: one entry point, a subcommand per service.

Each service subcommand is a thin adapter: it loads settings, configures logging and calls the
component's ``run`` function. Subcommands whose issue has not landed exit with status 3 and say so.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal, NoReturn

import typer

from signalstack import __version__
from signalstack.config import Settings, get_settings
from signalstack.errors import NotImplementedYetError, SignalStackError
from signalstack.logs import configure_logging

app = typer.Typer(
    name="signalstack",
    help="SignalStack: real-time market data → features → models → predictions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _settings() -> Settings:
    s = get_settings()
    configure_logging(s.log.level, s.log.format, secrets=s.secrets())
    return s


def _pending(command: str, issue: str) -> NoReturn:
    raise NotImplementedYetError(
        f"`signalstack {command}` is not implemented yet (lands with the {issue} issue)"
    )


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit(0)


@app.command()
def ingest(
    symbols: Annotated[
        str | None, typer.Option(help="Comma-separated symbols (default: MARKET_SYMBOLS).")
    ] = None,
) -> None:
    """Polygon WebSocket → validate → Kafka market.trades (invalid input → market.trades.dlq)."""
    from signalstack.ingest.service import run

    s = _settings()
    run(s, symbols=[x.strip().upper() for x in symbols.split(",")] if symbols else None)


@app.command()
def stream(
    engine: Annotated[
        Literal["local", "spark"], typer.Option(help="Stream engine: local or spark.")
    ] = "local",
    lateness_ms: Annotated[
        int | None, typer.Option(help="Allowed lateness of the event-time watermark, ms.")
    ] = None,
) -> None:
    """Trades → deduplicated 1-minute bars → features (store + Kafka market.features)."""
    from signalstack.engines.run import run

    run(_settings(), engine, lateness_ms=lateness_ms)


@app.command()
def sink() -> None:
    """Kafka market.trades / market.features / market.predictions → TimescaleDB, idempotently."""
    from signalstack.sink.service import run

    run(_settings())


@app.command()
def backfill(
    symbols: Annotated[
        str | None, typer.Option(help="Comma-separated symbols (default: MARKET_SYMBOLS).")
    ] = None,
    start: Annotated[str | None, typer.Option(help="First session date, YYYY-MM-DD.")] = None,
    end: Annotated[str | None, typer.Option(help="Last session date, YYYY-MM-DD.")] = None,
    source: Annotated[
        Literal["polygon", "polygon-aggs", "yfinance"],
        typer.Option(
            help="Where history comes from: polygon (REST trades), polygon-aggs (Polygon minute "
            "bars) or yfinance (Yahoo 1m bars); bars go to ohlcv_1m marked with their source."
        ),
    ] = "polygon",
    sink: Annotated[
        Literal["db", "kafka"],
        typer.Option(
            help="Where REST trades go: the store (db), or market.trades and the store (kafka)."
        ),
    ] = "db",
    detect_gaps: Annotated[
        bool, typer.Option("--detect-gaps", help="Fetch only the minutes with no bar.")
    ] = False,
    resume: Annotated[
        str | None, typer.Option("--resume", help="Carry on with this run id.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the ranges, fetch nothing.")
    ] = False,
    scheduled: Annotated[
        bool,
        typer.Option(
            "--scheduled",
            help="The CronJob's pass: heal the last BACKFILL_LOOKBACK_SESSIONS closed sessions.",
        ),
    ] = False,
    extended_hours: Annotated[
        bool | None, typer.Option(help="Pre/post-market too (default: MARKET_EXTENDED_HOURS).")
    ] = None,
    merge_minutes: Annotated[
        int | None, typer.Option(help="Join gaps this close (default: BACKFILL_MERGE_MINUTES).")
    ] = None,
    page_limit: Annotated[
        int | None, typer.Option(help="Trades per REST page (default: BACKFILL_PAGE_LIMIT).")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="The time (ISO 8601, UTC if no zone) to treat as now: which sessions are "
            "closed, which minutes settled (default: the wall clock; re-run a missed pass).",
        ),
    ] = None,
) -> None:
    """Find gaps on the trading calendar and fill them from Polygon REST (exit 5: not healed)."""
    from signalstack.backfill.cli import parse_now, run

    run(
        _settings(), symbols=symbols, start=start, end=end, source=source, sink=sink,
        detect_gaps=detect_gaps, resume=resume, dry_run=dry_run, scheduled=scheduled,
        extended_hours=extended_hours, merge_minutes=merge_minutes, page_limit=page_limit,
        now=parse_now(as_of),
    )  # fmt: skip


@app.command()
def train(
    symbols: Annotated[
        str | None, typer.Option(help="Comma-separated symbols (default: MARKET_SYMBOLS).")
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="First decision time: a date (New York) or ISO time.")
    ] = None,
    end: Annotated[str | None, typer.Option(help="End (exclusive), same forms as --start.")] = None,
    model: Annotated[
        str, typer.Option(help="all, or xgboost|regime, lstm|direction, iforest|anomaly.")
    ] = "all",
    data_source: Annotated[
        Literal["store", "simulator", "yfinance"],
        typer.Option(help="Feature rows from the store, seeded simulated sessions, or yfinance."),
    ] = "store",
    experiment: Annotated[
        str | None, typer.Option(help="MLflow experiment (default: TRAIN_EXPERIMENT).")
    ] = None,
    days: Annotated[int, typer.Option(min=2, help="Simulator: full sessions to simulate.")] = 5,
    trades_per_day: Annotated[
        int, typer.Option(min=1000, help="Simulator: trades per symbol and session.")
    ] = 20_000,
    random_walk: Annotated[
        bool, typer.Option("--random-walk", help="Simulator: a driftless, regime-free market.")
    ] = False,
    summary_json: Annotated[
        Path | None, typer.Option(help="Also write the run's summary as JSON here.")
    ] = None,
) -> None:
    """Train, evaluate (purged walk-forward, beside baselines), log to MLflow and gate the
    regime (XGBoost), direction (LSTM) and anomaly (Isolation Forest) models.

    Exit 0: a champion moved; 6: every champion stayed (no candidate beat it)."""
    from signalstack.training.cli import run

    code = run(
        _settings(), symbols=symbols, start=start, end=end, model=model,
        data_source=data_source, experiment=experiment, days=days,
        trades_per_day=trades_per_day, random_walk=random_walk, summary_json=summary_json,
    )  # fmt: skip
    raise typer.Exit(code)


@app.command()
def serve() -> None:
    """Serve predictions over HTTP: Open Inference Protocol v2 (/v2), /predict/*, /health,
    /metrics. Models from SERVING_MODEL_DIR, else the MLflow alias MLFLOW_MODEL_ALIAS."""
    from signalstack.serving.service import run

    run(_settings())


@app.command()
def drift(
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="The time (ISO 8601, UTC if no zone) the window ends at (default: now).",
        ),
    ] = None,
    retrain: Annotated[
        Literal["auto", "kubernetes", "local", "off"] | None,
        typer.Option(help="What to do about drift (default: DRIFT_RETRAIN)."),
    ] = None,
    metrics: Annotated[
        bool, typer.Option("--metrics", help="Also print the pass's Prometheus metrics.")
    ] = False,
) -> None:
    """PSI of each model's inputs over a recent window against its training reference; the
    drift table, gauges, and one retraining when a model drifted.

    Exit 0: no model drifted; 7: a model drifted (any input's PSI ≥ DRIFT_ALERT_PSI)."""
    from signalstack.drift.cli import run

    raise typer.Exit(run(_settings(), as_of=as_of, retrain=retrain, show_metrics=metrics))


@app.command()
def simulate(
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives the same market.")
    ] = 7,
) -> None:
    """Generate a seeded synthetic market (trades, regimes, labelled anomalies)."""
    _settings()
    _pending("simulate", "Market data")


@app.command()
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the simulated market.")] = 7,
    out: Annotated[Path, typer.Option(help="Directory for the report and the store.")] = Path(
        "demo-output"
    ),
    trades_per_day: Annotated[int, typer.Option(help="Trades per symbol per session.")] = 60_000,
    train: Annotated[
        bool, typer.Option(help="Train the three models on simulated history (local MLflow).")
    ] = True,
    train_days: Annotated[
        int, typer.Option(min=2, help="Sessions of simulated history to train on.")
    ] = 5,
) -> None:
    """Run the pipeline that exists on the embedded default (no cluster) and write a report."""
    from signalstack.demo import run

    run(_settings(), seed=seed, out=out, trades_per_day=trades_per_day, train=train,
        train_days=train_days)  # fmt: skip


@app.command("fake-polygon")
def fake_polygon(
    symbols: Annotated[
        str, typer.Option(help="Comma-separated symbols of the simulated market.")
    ] = "AAPL,MSFT,NVDA,AMZN,TSLA,SPY",
    date: Annotated[
        str | None, typer.Option(help="Session date YYYY-MM-DD (default: the simulator's).")
    ] = None,
    api_key: Annotated[str, typer.Option(help="The API key clients must send.")] = "test-key",
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for WebSocket and REST; 0 picks a free one.")] = 0,
    port_file: Annotated[
        Path | None, typer.Option(help="Write the bound port to this file once listening.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulated market.")] = 7,
    trades_per_day: Annotated[int, typer.Option(help="Trades per symbol per session.")] = 50_000,
    rate: Annotated[
        float, typer.Option(help="WebSocket replay, trades/s (0: as fast as clients read).")
    ] = 10_000.0,
    live: Annotated[
        bool,
        typer.Option(
            "--live/--history",
            help="live: trades restamped with the wall clock, REST serves what has been sent; "
            "history: a past day, all of it on REST from the start.",
        ),
    ] = False,
    loop: Annotated[
        bool, typer.Option("--loop/--no-loop", help="Replay the tape when it ends.")
    ] = True,
    recorded: Annotated[
        Path | None, typer.Option(help="Serve a file of recorded WebSocket frames instead.")
    ] = None,
) -> None:
    """A fake Polygon server (WebSocket + REST on one port) serving a simulated day."""
    import asyncio
    import contextlib
    import datetime as dt

    from signalstack.marketdata.fake_polygon import FakeConfig, build_tape, serve_forever

    _settings()
    try:
        day = dt.date.fromisoformat(date) if date else None
    except ValueError:
        raise typer.BadParameter(
            f"expected YYYY-MM-DD, got {date!r}", param_hint="--date"
        ) from None
    syms = [s.strip().upper() for s in symbols.split(",") if s.strip()]
    if not syms and recorded is None:
        raise typer.BadParameter("at least one symbol is required", param_hint="--symbols")
    tape = build_tape(syms, date=day, seed=seed, trades_per_day=trades_per_day, recorded=recorded)
    cfg = FakeConfig(
        api_keys=frozenset({api_key}),
        rate=rate or None,
        restamp=live,
        start_on_subscribe=not live,
        on_end="loop" if loop else "stop",
    )
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: a clean exit
        asyncio.run(
            serve_forever(tape, cfg, host, port, port_file, announce=lambda m: typer.echo(m))
        )


@app.command("config")
def show_config() -> None:
    """Print the effective configuration (secrets masked) and exit non-zero if it is invalid."""
    s = _settings()
    typer.echo(s.model_dump_json(indent=2))


def service_main(name: str, run: Callable[[Settings], object]) -> int:
    """``python -m signalstack.<service>``: one service without the full CLI, same exit codes."""
    try:
        run(_settings())
    except SignalStackError as err:
        print(f"signalstack {name}: error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


def main() -> None:
    try:
        app()
    except SignalStackError as err:
        typer.echo(f"signalstack: error: {err}", err=True)
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
