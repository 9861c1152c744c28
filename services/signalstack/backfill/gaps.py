"""Gap detection: the calendar's minutes that have no bar in ``ohlcv_1m``, grouped into ranges.

Sessions come from exchange_calendars (holidays, early closes and DST handled by the calendar,
never by hand); their bounds, regular or extended, are read from the stream engine's own
:class:`~signalstack.features.sessions.SessionIndex` (extended: 04:00 New York to four hours
after the regular close), so backfill and the engine agree on which minutes a session has.

A minute a thinly traded symbol had no trade in never gets a bar, so it would look like a gap
forever. Every range a backfill fetched completely is recorded as ``done`` in
``backfill_ranges``; its minutes are *checked* and not reported again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import pandas as pd

from signalstack.store.base import Store
from signalstack.store.gaps import session_bounds, sessions

MINUTE = pd.Timedelta(minutes=1)
# A gap is fetched with one minute more on each side (within the session): the minute where live
# data stopped or resumed has a bar, but probably not all of its trades.
PAD = MINUTE


@dataclass(frozen=True, slots=True)
class Gap:
    """Trade time ``start <= ts_event < end`` of one symbol in one session with no bars."""

    symbol: str
    session: dt.date
    start: pd.Timestamp
    end: pd.Timestamp

    @property
    def minutes(self) -> int:
        return int((self.end - self.start) / MINUTE)


def session_minutes(
    session: dt.date, calendar: str = "XNYS", extended_hours: bool = False
) -> pd.DatetimeIndex:
    """Bar ends (UTC) of every minute of the session: open + 1 minute .. close."""
    open_, close = session_bounds(session, calendar, extended_hours)
    return pd.date_range(open_ + MINUTE, close, freq="1min")


def unchecked(
    ends: pd.DatetimeIndex, checked: Iterable[tuple[pd.Timestamp, pd.Timestamp]]
) -> pd.DatetimeIndex:
    """Bar ends whose minute ``[end - 1 minute, end)`` lies in none of the checked ranges."""
    keep = pd.Series(True, index=ends)
    for lo, hi in checked:
        keep &= ~((ends - MINUTE >= lo) & (ends <= hi))
    return pd.DatetimeIndex(ends[keep.to_numpy()])


def group_minutes(ends: pd.DatetimeIndex) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Consecutive bar ends → trade-time ranges ``[first end - 1 minute, last end)``."""
    if len(ends) == 0:
        return []
    ends = ends.sort_values()
    breaks = (ends[1:] - ends[:-1]) != MINUTE
    starts_at = [0, *[i + 1 for i, b in enumerate(breaks) if b]]
    stops_at = [*[i for i, b in enumerate(breaks) if b], len(ends) - 1]
    return [(ends[a] - MINUTE, ends[b]) for a, b in zip(starts_at, stops_at, strict=True)]


def merge_close(gaps: Sequence[Gap], within_minutes: int) -> list[Gap]:
    """Join gaps of the same symbol and session separated by at most ``within_minutes``: one
    request for both costs less than two (the trades in between are skipped as duplicates)."""
    out: list[Gap] = []
    for g in gaps:
        last = out[-1] if out else None
        if (
            last is not None
            and last.symbol == g.symbol
            and last.session == g.session
            and g.start - last.end <= pd.Timedelta(minutes=within_minutes)
        ):
            out[-1] = Gap(g.symbol, g.session, last.start, max(last.end, g.end))
        else:
            out.append(g)
    return out


def find_gaps(
    store: Store,
    symbols: Sequence[str],
    start: dt.date,
    end: dt.date,
    *,
    calendar: str = "XNYS",
    extended_hours: bool = False,
    merge_within_minutes: int = 0,
    bars_from: Sequence[str] | None = None,
    checked_by: Sequence[str] | None = None,
) -> list[Gap]:
    """For each symbol and each session in ``start..end``, the unchecked minutes with no bar,
    grouped into ranges padded by :data:`PAD` on both sides within the session (ranges that
    then touch or overlap are joined; ordered by symbol, then time).

    ``bars_from``: only bars of these ``ohlcv_1m.source`` values count (a trade backfill looks
    for minutes without an engine bar: a vendor bar is a stand-in its trades replace);
    ``checked_by``: only ranges done by runs of these backfill sources count as checked."""
    days = sessions(start, end, calendar)
    if not days:
        return []
    bounds = {d: session_bounds(d, calendar, extended_hours) for d in days}
    lo, hi = bounds[days[0]][0], bounds[days[-1]][1] + MINUTE
    gaps: list[Gap] = []
    for symbol in symbols:
        if bars_from is None:
            have = pd.DatetimeIndex(store.bars([symbol], lo, hi)["ts"])
        else:
            src = store.bar_sources([symbol], lo, hi)
            have = pd.DatetimeIndex(src.loc[src["source"].isin(list(bars_from)), "ts"])
        done = store.checked_ranges([symbol], lo, hi, checked_by)
        checked = [(r.start, r.end) for r in done]
        for day in days:
            missing = session_minutes(day, calendar, extended_hours).difference(have)
            missing = unchecked(missing, checked)
            open_, close = bounds[day]
            gaps += [
                Gap(symbol, day, max(open_, a - PAD), min(close, b + PAD))
                for a, b in group_minutes(missing)
            ]
    return merge_close(gaps, max(0, merge_within_minutes))


def clip_gaps(gaps: Sequence[Gap], until: pd.Timestamp) -> list[Gap]:
    """The gaps cut at ``until`` (minutes from there on may still get trades): ranges ending
    later end there, ranges starting there or later are dropped."""
    return [replace(g, end=min(g.end, until)) for g in gaps if g.start < until]
