"""Trading sessions (exchange-calendars, XNYS by default): which trades are in a session, and
where the session starts (windows never reach back past it).

Regular hours by default, including half days (early closes come from the calendar). With
``extended_hours=True`` a session runs from 04:00 America/New_York on the session date to four
hours after the regular close (20:00, or 17:00 on a half day).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

NS_PER_MINUTE: Final = 60_000_000_000
NO_SESSION: Final = np.int64(-1)


class SessionIndex:
    """Sorted session bounds as int64 ns arrays; lookups are one ``searchsorted``."""

    def __init__(self, starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64]) -> None:
        order = np.argsort(starts, kind="stable")
        self.starts = np.ascontiguousarray(starts[order], dtype=np.int64)
        self.ends = np.ascontiguousarray(ends[order], dtype=np.int64)
        # the last batch's span [start of session i, start of session i + 1) as (i, bounds…):
        # a stream's batches mostly fall in the same one (an atomic swap: safe to share)
        self._last: tuple[int, int, int] | None = None

    def session_start(self, ts_ns: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Start (ns) of the session containing each timestamp, or -1 outside every session."""
        if len(ts_ns) == 0:
            return np.zeros(0, dtype=np.int64)
        # fast path: the whole batch lies between one session's start and the next one's
        t_min, t_max = int(ts_ns.min()), int(ts_ns.max())
        last = self._last
        if last is not None and last[1] <= t_min and t_max < last[2]:
            lo = hi = last[0]
        else:
            lo, hi = (int(i) for i in np.searchsorted(self.starts, [t_min, t_max], "right") - 1)
            if lo == hi:
                nxt = int(self.starts[lo + 1]) if lo + 1 < len(self.starts) else 2**63 - 1
                self._last = (lo, int(self.starts[lo]) if lo >= 0 else -(2**63), nxt)
        if lo == hi:
            if lo < 0:
                return np.full(len(ts_ns), NO_SESSION, dtype=np.int64)
            start = self.starts[lo]
            return np.where(ts_ns < self.ends[lo], start, NO_SESSION).astype(np.int64, copy=False)
        i = np.searchsorted(self.starts, ts_ns, side="right") - 1
        ok = i >= 0
        j = np.where(ok, i, 0)
        inside = ok & (ts_ns < self.ends[j])
        return np.where(inside, self.starts[j], NO_SESSION).astype(np.int64, copy=False)

    @classmethod
    def from_bounds(cls, bounds: list[tuple[pd.Timestamp, pd.Timestamp]]) -> SessionIndex:
        """Explicit sessions (tests): ``[(start, end), ...]`` as tz-aware timestamps."""
        s = np.array([pd.Timestamp(a).value for a, _ in bounds], dtype=np.int64)
        e = np.array([pd.Timestamp(b).value for _, b in bounds], dtype=np.int64)
        return cls(s, e)


@lru_cache(maxsize=4)
def session_index(calendar: str = "XNYS", extended_hours: bool = False) -> SessionIndex:
    """The calendar's sessions (cached per process: loading a calendar takes ~0.5 s)."""
    import exchange_calendars as xcals

    cal = xcals.get_calendar(calendar)
    sched = cal.schedule
    opens = sched["open"]
    closes = sched["close"]
    if extended_hours:
        tz = cal.tz
        dates = pd.DatetimeIndex(sched.index)
        pre = (dates.tz_localize(None) + pd.Timedelta(hours=4)).tz_localize(tz).tz_convert("UTC")
        starts = pre.asi8
        ends = (closes + pd.Timedelta(hours=4)).to_numpy(dtype="datetime64[ns]").view(np.int64)
    else:
        starts = opens.to_numpy(dtype="datetime64[ns]").view(np.int64)
        ends = closes.to_numpy(dtype="datetime64[ns]").view(np.int64)
    return SessionIndex(np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64))
