"""REST query parameters and bars for the fake Polygon server.

Parameters are checked here and refused with :class:`BadRequestError` (a 400 with its message);
bars are built by the features library's minute aggregation (the consolidated condition update
rules, as our own ``ohlcv_1m``) over buckets of any width.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pandas as pd

from signalstack.features.bars import TradeArrays, aggregate_minutes
from signalstack.features.sessions import NS_PER_MINUTE
from signalstack.marketdata.fake_tape import TapeColumns

NY: Final = ZoneInfo("America/New_York")
MAX_MS: Final = 2**62 // 1_000_000
_SPAN_NS: Final = {"second": 1_000_000_000, "minute": NS_PER_MINUTE, "hour": 60 * NS_PER_MINUTE}

I8 = npt.NDArray[np.int64]


class BadRequestError(ValueError):
    """A REST parameter the fake (and Polygon) cannot take: a 400 with this message."""


def loop_id(trade_id: str, loop: int) -> str:
    return f"{trade_id}-{loop}"


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise BadRequestError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def int_param(name: str, value: object, lo: int, hi: int) -> int:
    try:
        v = int(str(value))
    except ValueError:
        raise BadRequestError(f"{name}: expected an integer, got {value!r}") from None
    if not lo <= v <= hi:
        raise BadRequestError(f"{name}: must be between {lo} and {hi}, got {v}")
    return v


def ny_day_ns(day: dt.date) -> tuple[int, int]:
    """[00:00, next 00:00) America/New_York of ``day``, in UTC ns."""
    a = dt.datetime.combine(day, dt.time(), tzinfo=NY)
    b = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=NY)
    return int(a.timestamp()) * 1_000_000_000, int(b.timestamp()) * 1_000_000_000


def parse_timestamp(name: str, value: str) -> tuple[int, int]:
    """A ``timestamp`` parameter as the half-open ns range it names: nanoseconds since the epoch
    (one instant) or a date ``YYYY-MM-DD`` (that New York trading day: 00:00 to 00:00 ET)."""
    v = str(value).strip()
    if v.isdigit():
        return int(v), int(v) + 1
    try:
        day = dt.date.fromisoformat(v) if len(v) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise BadRequestError(
            f"{name}: expected a date YYYY-MM-DD or nanoseconds since the epoch, got {v!r}"
        )
    return ny_day_ns(day)


def time_bounds(ts: I8, state: Mapping[str, Any]) -> tuple[int, int]:
    """The [lo, hi) index range of sorted ``ts`` selected by the ``timestamp*`` filters."""
    lo, hi = 0, len(ts)

    def left(x: int) -> int:
        return int(np.searchsorted(ts, x, "left"))

    for name, val in state.items():
        if not name.startswith("timestamp"):
            continue
        start, end = parse_timestamp(name, val)
        op = name.partition(".")[2]
        if op == "":
            lo, hi = max(lo, left(start)), min(hi, left(end))
        elif op == "gte":
            lo = max(lo, left(start))
        elif op == "gt":
            lo = max(lo, left(end))
        elif op == "lte":
            hi = min(hi, left(end))
        elif op == "lt":
            hi = min(hi, left(start))
        else:
            raise BadRequestError(f"{name}: unknown filter (use timestamp.gte/gt/lte/lt)")
    return lo, hi


def position(ts: I8, gid: I8, t: int, g: int, side: Literal["left", "right"]) -> int:
    """Index of (t, g) in the (ts, gid)-sorted arrays."""
    a, b = int(np.searchsorted(ts, t, "left")), int(np.searchsorted(ts, t, "right"))
    return a + int(np.searchsorted(gid[a:b], g, side))


def agg_bound(name: str, value: str, *, end: bool) -> int:
    """An aggregates ``from``/``to``: ms since the epoch, or a date (its New York day), in ms."""
    if value.isdigit():
        return int(value)
    try:
        day = dt.date.fromisoformat(value) if len(value) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise BadRequestError(f"{name}: expected a date YYYY-MM-DD or milliseconds, got {value!r}")
    a, b = ny_day_ns(day)
    return (b // 1_000_000 - 1) if end else a // 1_000_000


def bucketer(span: str, mult: int) -> Callable[[I8], I8]:
    """Bar start (ns) of each timestamp: fixed widths in UTC, days from 00:00 New York."""
    if span in _SPAN_NS:
        w = _SPAN_NS[span] * mult
        return lambda ts: ts // w * w
    if span == "day" and mult == 1:

        def day_start(ts: I8) -> I8:
            local = pd.DatetimeIndex(pd.to_datetime(ts, utc=True)).tz_convert(NY).normalize()
            return np.asarray(local.asi8, dtype=np.int64)

        return day_start
    raise BadRequestError(
        f"timespan: {mult}/{span} is not served by the fake (second, minute, hour: any multiplier;"
        " day: 1)"
    )


def bars(
    cols: TapeColumns, ts: I8, rows: I8, bucket: Callable[[I8], I8], from_ms: int, to_ms: int
) -> list[dict[str, Any]]:
    """Bars of the trades ``rows`` (served at ``ts``) by the consolidated update rules — the
    features library's minute aggregation over buckets of any width — with start ``t`` (ms) in
    [from_ms, to_ms], ascending. Only buckets with a last-eligible trade make a bar."""
    if len(ts) == 0:
        return []
    starts = bucket(ts)
    keep = (starts >= from_ms * 1_000_000) & (starts <= to_ms * 1_000_000)
    if not keep.any():
        return []
    ts, rows, starts = ts[keep], rows[keep], starts[keep]
    order = np.lexsort((cols.seq[rows], ts))
    ts, rows, starts = ts[order], rows[order], starts[order]
    uniq = np.unique(starts)
    # Bucket k becomes "minute" k: the library's bar code then groups by bucket as it is.
    k = np.searchsorted(uniq, starts).astype(np.int64)
    t = TradeArrays(
        sym=np.zeros(len(ts), np.int32), ts=k * NS_PER_MINUTE, seq=cols.seq[rows],
        price=cols.price[rows], size=cols.size[rows], flags=cols.flags[rows],
        session=np.zeros(len(ts), np.int64),
    )  # fmt: skip
    m = aggregate_minutes(t, presorted=True)
    m = m.take(m.has_bar)
    first = uniq[m.ts // NS_PER_MINUTE - 1] // 1_000_000
    out = []
    for t0, o, h, lo, c, v, n, pv, vv in zip(
        first.tolist(), m.open.tolist(), m.high.tolist(), m.low.tolist(), m.close.tolist(),
        m.volume.tolist(), m.trade_count.tolist(), m.vwap_pv.tolist(), m.vwap_v.tolist(),
        strict=True,
    ):  # fmt: skip
        bar = {"v": v, "o": o, "c": c, "h": h, "l": lo, "t": t0, "n": n}
        if vv > 0:
            bar["vw"] = round(pv / vv, 4)
        out.append(bar)
    return out
