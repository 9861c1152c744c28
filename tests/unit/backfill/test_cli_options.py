"""`signalstack backfill` arguments: bad input is a clear error (exit 2); progress by terminal."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from signalstack.backfill.cli import options, parse_now, run
from signalstack.backfill.progress import LogProgress, RichProgress, progress_for
from signalstack.backfill.run import BackfillError
from signalstack.config import Settings, StoreSettings
from signalstack.store import StoreError


def _opts(**kw: object):  # type: ignore[no-untyped-def]
    base: dict[str, object] = {
        "symbols": "aapl, msft", "start": "2024-03-11", "end": "2024-03-12", "detect_gaps": True,
        "extended_hours": None, "merge_minutes": 15, "page_limit": 50_000,
    }  # fmt: skip
    return options(Settings(), **{**base, **kw})  # type: ignore[arg-type]


def test_options_from_arguments() -> None:
    o = _opts()
    assert o.symbols == ("AAPL", "MSFT") and str(o.start) == "2024-03-11"
    assert o.extended_hours is False and o.calendar == "XNYS"
    assert _opts(symbols=None).symbols == Settings().market.symbols


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"start": None}, "--start is required"),
        ({"end": "2024-13-01"}, "--end must be a date"),
        ({"end": "2024-03-01"}, "before --start"),
        ({"page_limit": 0}, "--page-limit"),
    ],
)
def test_bad_arguments_are_clear_errors(kw: dict[str, object], message: str) -> None:
    with pytest.raises(BackfillError, match=message) as err:
        _opts(**kw)
    assert err.value.exit_code == 2


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_json_logs_otherwise() -> None:
    assert isinstance(progress_for(_Tty()), RichProgress)
    p = progress_for(io.StringIO())
    assert isinstance(p, LogProgress) and not isinstance(p, RichProgress)


def test_rich_progress_runs_through_a_run(capsys: pytest.CaptureFixture[str]) -> None:
    import pandas as pd

    from signalstack.store.base import BackfillRange

    t = pd.Timestamp("2024-03-12 13:30", tz="UTC")
    r = BackfillRange("r1", 0, "AAPL", t, t + pd.Timedelta(minutes=5))
    p = RichProgress()
    p.start("r1", [r], 5)
    p.page(r)
    p.range_done(r)
    p.finish({"run_id": "r1", "status": "ok", "trades_stored": 1234})
    assert "1,234" in capsys.readouterr().err


def test_a_store_that_cannot_be_opened_is_an_error_not_a_skipped_pass(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # only another process holding the file's lock means "another pass runs": a missing
    # directory (whose name happens to say "lock") is a configuration error
    path = tmp_path / "blocked" / "store.duckdb"
    settings = Settings(store=StoreSettings(type="duckdb", duckdb_path=str(path)))
    with pytest.raises(StoreError, match="cannot open DuckDB store"):
        run(settings, symbols="AAPL", start=None, end=None, scheduled=True)


def test_as_of_is_a_utc_time() -> None:
    assert parse_now("2024-03-09T01:00") == pd.Timestamp("2024-03-09 01:00", tz="UTC")
    assert parse_now("2024-03-08T20:00-05:00") == pd.Timestamp("2024-03-09 01:00", tz="UTC")
    assert parse_now(None) is None
    with pytest.raises(BackfillError, match="--as-of"):
        parse_now("yesterday-ish")
