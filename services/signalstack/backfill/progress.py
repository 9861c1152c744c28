"""How a backfill shows its progress: a rich progress bar with ETA on a terminal, JSON log lines
otherwise (a CronJob's log, CI), and a summary at the end either way."""

from __future__ import annotations

import sys
from typing import Any, Protocol

from signalstack.logs import get_logger
from signalstack.store.base import BackfillRange

log = get_logger("signalstack.backfill")


class Progress(Protocol):
    def start(self, run_id: str, ranges: list[BackfillRange], minutes: int) -> None: ...

    def page(self, rng: BackfillRange) -> None: ...

    def range_done(self, rng: BackfillRange) -> None: ...

    def finish(self, summary: dict[str, Any]) -> None: ...


class LogProgress:
    """JSON progress: one line per range (pages at DEBUG), the summary as the last line."""

    def start(self, run_id: str, ranges: list[BackfillRange], minutes: int) -> None:
        todo = sum(r.status != "done" for r in ranges)
        log.info("backfill_start", run_id=run_id, ranges=len(ranges), todo=todo, minutes=minutes)

    def page(self, rng: BackfillRange) -> None:
        log.debug("backfill_page", run_id=rng.run_id, seq=rng.seq, symbol=rng.symbol,
                  cursor_ns=rng.cursor_ns, trades=rng.trades, stored=rng.stored)  # fmt: skip

    def range_done(self, rng: BackfillRange) -> None:
        log.info("backfill_range", run_id=rng.run_id, seq=rng.seq, symbol=rng.symbol,
                 start=rng.start.isoformat(), end=rng.end.isoformat(), status=rng.status,
                 trades=rng.trades, stored=rng.stored)  # fmt: skip

    def finish(self, summary: dict[str, Any]) -> None:
        log.info("backfill_summary", **summary)


class RichProgress(LogProgress):
    """A progress bar over the ranges with ETA, and a summary table (JSON logs stay on)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar

        self.console = Console(stderr=True)
        self.bar = Bar(
            TextColumn("[bold]backfill[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.task: Any = None

    def start(self, run_id: str, ranges: list[BackfillRange], minutes: int) -> None:
        self.bar.start()
        done = sum(r.status == "done" for r in ranges)
        self.task = self.bar.add_task(run_id, total=len(ranges), completed=done)

    def page(self, rng: BackfillRange) -> None:
        self.bar.update(self.task, description=f"{rng.symbol} {rng.start:%Y-%m-%d %H:%M}")

    def range_done(self, rng: BackfillRange) -> None:
        self.bar.advance(self.task)

    def finish(self, summary: dict[str, Any]) -> None:
        from rich.table import Table

        self.bar.stop()
        table = Table(title=f"backfill {summary.get('run_id')}", show_header=False)
        for k, v in summary.items():
            table.add_row(k, f"{v:,}" if isinstance(v, int) else str(v))
        self.console.print(table)


def progress_for(stream: Any = None) -> Progress:
    """A progress bar when ``stream`` (stderr by default) is a terminal, else JSON logs."""
    s = stream if stream is not None else sys.stderr
    return RichProgress() if s.isatty() else LogProgress()
