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
    """(open, close) of a session in UTC, as the stream engine's session index has them: the
    calendar's open and close, or with extended hours 04:00 New York to four hours after the
    close (so a half day ends at 17:00). The one definition backfill and the store share."""
    from signalstack.features.sessions import session_index

    cal = _calendar(calendar)
    regular_open = cal.session_open(pd.Timestamp(session))
    index = session_index(calendar, extended_hours)
    i = int(index.starts.searchsorted(regular_open.value, side="right")) - 1
    if i < 0 or regular_open.value >= int(index.ends[i]):
        raise ValueError(f"{session} is not a session of the engine's {calendar} index")
    return (
        pd.Timestamp(int(index.starts[i]), tz="UTC"),
        pd.Timestamp(int(index.ends[i]), tz="UTC"),
    )


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
