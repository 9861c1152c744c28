"""Gap arithmetic for backfill: trading-calendar sessions/minutes minus what the store holds.

Pure functions over frames; the stores supply ``coverage`` (rows per symbol and session) and
bar timestamps. Sessions come from exchange_calendars (XNYS by default), so holidays and half
days are not reported as gaps.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import pandas as pd

NY = "America/New_York"


@lru_cache(maxsize=4)
def _calendar(name: str) -> Any:
    import exchange_calendars as xc

    return xc.get_calendar(name)


def sessions(start: dt.date, end: dt.date, calendar: str = "XNYS") -> list[dt.date]:
    """Trading sessions in start..end inclusive."""
    cal = _calendar(calendar)
    lo = max(pd.Timestamp(start), cal.first_session)
    hi = min(pd.Timestamp(end), cal.last_session)
    if lo > hi:
        return []
    return [s.date() for s in cal.sessions_in_range(lo, hi)]


def session_bounds(
    session: dt.date, calendar: str = "XNYS", extended_hours: bool = False
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(open, close) of a session in UTC; extended hours are 04:00-20:00 New York time."""
    if extended_hours:
        day = pd.Timestamp(session)
        open_ = (day + pd.Timedelta(hours=4)).tz_localize(NY).tz_convert("UTC")
        close = (day + pd.Timedelta(hours=20)).tz_localize(NY).tz_convert("UTC")
        return open_, close
    cal = _calendar(calendar)
    s = pd.Timestamp(session)
    return cal.session_open(s).tz_convert("UTC"), cal.session_close(s).tz_convert("UTC")


def missing_sessions(
    coverage: pd.DataFrame,
    symbols: Sequence[str],
    start: dt.date,
    end: dt.date,
    calendar: str = "XNYS",
) -> pd.DataFrame:
    """Every (symbol, session) of the calendar in start..end absent from ``coverage``."""
    have = {
        (str(sym), sess)
        for sym, sess, n in zip(
            coverage["symbol"], coverage["session"], coverage["rows"], strict=True
        )
        if int(n) > 0
    }
    rows = [
        (sym, sess)
        for sym in symbols
        for sess in sessions(start, end, calendar)
        if (sym, sess) not in have
    ]
    return pd.DataFrame(rows, columns=["symbol", "session"])


def missing_minutes(
    have: pd.Series | Sequence[pd.Timestamp], open_: pd.Timestamp, close: pd.Timestamp
) -> list[pd.Timestamp]:
    """Bar ends in (open, close] (one per minute) not present in ``have``."""
    ends = pd.date_range(open_ + pd.Timedelta(minutes=1), close, freq="1min")
    present = pd.DatetimeIndex(pd.Series(have, dtype="datetime64[ns, UTC]"))
    return list(ends.difference(present))
