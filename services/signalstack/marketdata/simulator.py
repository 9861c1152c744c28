"""A seeded, vectorised US-equity market simulator (``signalstack simulate``).

What it models, per symbol and regular session (09:30–16:00 America/New_York):

- **regimes**: a sticky Markov chain over minutes between ``calm``, ``trending`` (a drift with a
  sign per episode) and ``volatile``; the label of every minute is returned;
- **intraday U-shapes**: trade intensity and volatility are highest at the open, lowest at
  midday and rise again into the close;
- **price**: a log-price random walk at trade level with per-minute volatility, drift in trending
  episodes, t-distributed **jumps** (more frequent when volatile) and bid/ask bounce, on a one-cent
  grid;
- **sizes**: odd lots (< 100 shares, condition 37), round and mixed lots with a Pareto tail;
- **sale conditions** drawn from the codes of the bundled conditions table (ISO 14, 41, average
  price 2, cash 7, derivatively priced 10, QCT 53, official open/close 16/15, Form T 12 in
  extended hours);
- **late prints** (reported seconds to minutes after they happened, flagged 33 and delivered out of
  order) and **duplicate prints** (the same trade identity delivered twice);
- **labelled anomalies**: ``spike`` (one fat-finger print), ``volume_burst`` (a burst of large
  trades), ``flash_crash`` (a fast drop and recovery), with their symbol and time window.

Everything is numpy; a full day of several liquid symbols generates in well under a second per
million trades. The same seed and config give byte-identical output.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

import numpy as np
import orjson

from signalstack.schemas.trade import SCHEMA_VERSION, Source, TradeEvent

if TYPE_CHECKING:
    import pandas as pd

NY: Final = ZoneInfo("America/New_York")
NS_PER_MIN: Final = 60_000_000_000
SESSION_MINUTES: Final = 390
REGIMES: Final = ("calm", "trending", "volatile")
ANOMALY_KINDS: Final = ("spike", "volume_burst", "flash_crash")
MAX_LATE_S: Final = 240.0

# Exchange ids (Polygon stocks): 4 is FINRA ADF/TRF (off-exchange, a third of the tape).
_EXCHANGES: Final = np.array([1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 15, 17, 18, 19, 21], dtype=np.int16)
_EXCHANGE_P: Final = np.array(
    [0.02, 0.01, 0.02, 0.35, 0.03, 0.03, 0.01, 0.06, 0.06, 0.20, 0.03, 0.04, 0.02, 0.10, 0.02]
)
_KNOWN_PRICES: Final = {
    "AAPL": 268.0, "MSFT": 478.0, "NVDA": 181.0, "AMZN": 220.0, "TSLA": 400.0, "SPY": 660.0,
    "GOOGL": 290.0, "META": 590.0, "AMD": 210.0, "NFLX": 110.0, "JPM": 300.0, "QQQ": 600.0,
}  # fmt: skip
_REG_VOLUME: Final = np.array([1.0, 1.3, 2.0])
_REG_VOL: Final = np.array([1.0, 1.2, 2.6])
_REG_JUMP_P: Final = np.array([0.002, 0.004, 0.03])  # per minute


@dataclass(frozen=True)
class SimConfig:
    """Knobs of the simulated market. Rates are per symbol per regular session."""

    seed: int = 7
    symbols: tuple[str, ...] = ("AAPL", "MSFT", "NVDA", "AMZN", "TSLA", "SPY")
    date: dt.date = dt.date(2025, 11, 20)
    trades_per_day: int = 50_000
    daily_vol: tuple[float, float] = (0.012, 0.03)  # range drawn per symbol
    odd_lot_frac: float = 0.35
    late_frac: float = 0.002
    max_late_s: float = MAX_LATE_S  # cap on a late print's reporting delay
    duplicate_frac: float = 0.001
    anomalies_per_day: float = 3.0
    extended_hours: bool = False
    regime_stay: float = 0.985  # per-minute probability of keeping the regime
    # A pure random walk: every minute calm (no trending drift, no volatile storms), so a
    # direction model has nothing to learn (the training gate must refuse it).
    random_walk: bool = False
    start_prices: dict[str, float] = field(default_factory=dict)


@dataclass
class SimulatedMarket:
    """Simulated trades in **delivery order** (arrival time), plus ground-truth labels.

    Columns are numpy arrays of equal length. ``cond_pattern`` indexes ``patterns`` (a trade's
    condition codes). ``anomaly`` is 0 for normal trades, else 1 + index into ANOMALY_KINDS.
    """

    symbols: tuple[str, ...]
    sym: np.ndarray  # int16 index into symbols
    ts_event: np.ndarray  # int64 ns, SIP time
    arrival: np.ndarray  # int64 ns, when the feed delivers it
    price: np.ndarray  # float64
    size: np.ndarray  # int64 shares
    exchange: np.ndarray  # int16
    tape: np.ndarray  # int8
    trade_id: np.ndarray  # int64 (rendered as a string on the wire)
    sequence: np.ndarray  # int64
    cond_pattern: np.ndarray  # int16
    patterns: tuple[tuple[int, ...], ...]
    is_late: np.ndarray  # bool
    is_duplicate: np.ndarray  # bool
    anomaly: np.ndarray  # int8
    regime: np.ndarray  # int8, regime of the trade's minute
    regimes: dict[str, np.ndarray]  # symbol -> int8 regime per session minute
    session_open_ns: int
    anomalies: list[dict[str, Any]]  # {symbol, kind, start_ns, end_ns}

    def __len__(self) -> int:
        return int(self.sym.shape[0])

    # ------------------------------------------------------------------ views
    def trade_ids(self) -> list[str]:
        return [str(i) for i in self.trade_id.tolist()]

    def conditions(self) -> list[tuple[int, ...]]:
        pats = self.patterns
        return [pats[i] for i in self.cond_pattern.tolist()]

    def to_frame(self, labels: bool = True) -> pd.DataFrame:
        """Trade events as a DataFrame (``source`` = ``sim``), optionally with the labels."""
        import pandas as pd

        pat = np.empty(len(self.patterns), dtype=object)
        pat[:] = [list(p) for p in self.patterns]
        cols: dict[str, Any] = {
            "symbol": np.asarray(self.symbols, dtype=object)[self.sym],
            "ts_event": self.ts_event,
            "price": self.price,
            "size": self.size.astype(np.float64),
            "exchange": self.exchange.astype(np.int64),
            "conditions": pat[self.cond_pattern],
            "trade_id": np.array([str(i) for i in self.trade_id.tolist()], dtype=object),
            "sequence": self.sequence,
            "tape": self.tape.astype(np.int64),
            "source": Source.SIM.value,
            "ts_ingest": self.arrival,
        }
        if labels:
            cols["is_late"] = self.is_late
            cols["is_duplicate"] = self.is_duplicate
            cols["anomaly"] = np.asarray(("", *ANOMALY_KINDS), dtype=object)[self.anomaly]
            cols["regime"] = np.asarray(REGIMES, dtype=object)[self.regime]
        return pd.DataFrame(cols)

    def regime_frame(self) -> pd.DataFrame:
        """One row per (symbol, session minute): ``ts`` is the minute's start (ns), ``regime``."""
        import pandas as pd

        n = SESSION_MINUTES
        starts = self.session_open_ns + np.arange(n, dtype=np.int64) * NS_PER_MIN
        return pd.DataFrame(
            {
                "symbol": np.repeat(np.asarray(self.symbols, dtype=object), n),
                "ts": np.tile(starts, len(self.symbols)),
                "regime": np.asarray(REGIMES, dtype=object)[
                    np.concatenate([self.regimes[s] for s in self.symbols])
                ],
            }
        )

    def events(self, source: str = Source.SIM.value) -> Iterator[dict[str, Any]]:
        """Trade-event dicts (the ``market.trades`` value shape) in delivery order."""
        syms = self.symbols
        pats = [list(p) for p in self.patterns]
        for s, te, ar, p, sz, x, tp, tid, q, cp in zip(
            self.sym.tolist(), self.ts_event.tolist(), self.arrival.tolist(),
            self.price.tolist(), self.size.tolist(), self.exchange.tolist(),
            self.tape.tolist(), self.trade_id.tolist(), self.sequence.tolist(),
            self.cond_pattern.tolist(), strict=True,
        ):  # fmt: skip
            yield {
                "schema_version": SCHEMA_VERSION,
                "symbol": syms[s],
                "ts_event": te,
                "price": p,
                "size": float(sz),
                "exchange": x,
                "conditions": pats[cp],
                "trade_id": str(tid),
                "sequence": q,
                "tape": tp,
                "source": source,
                "ts_ingest": ar,
            }

    def trade_events(self) -> list[TradeEvent]:
        src = Source.SIM
        return [
            TradeEvent(
                symbol=e["symbol"], ts_event=e["ts_event"], price=e["price"], size=e["size"],
                exchange=e["exchange"], trade_id=e["trade_id"], sequence=e["sequence"],
                source=src, ts_ingest=e["ts_ingest"], conditions=tuple(e["conditions"]),
                tape=e["tape"],
            )
            for e in self.events()
        ]  # fmt: skip

    def ws_events(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        """Polygon WebSocket ``T`` events (``t`` in ms) for rows ``[start, stop)``."""
        sl = slice(start, stop)
        syms = self.symbols
        pats = [list(p) for p in self.patterns]
        out: list[dict[str, Any]] = []
        for s, te, p, sz, x, tp, tid, q, cp in zip(
            self.sym[sl].tolist(), (self.ts_event[sl] // 1_000_000).tolist(),
            self.price[sl].tolist(), self.size[sl].tolist(), self.exchange[sl].tolist(),
            self.tape[sl].tolist(), self.trade_id[sl].tolist(), self.sequence[sl].tolist(),
            self.cond_pattern[sl].tolist(), strict=True,
        ):  # fmt: skip
            ev: dict[str, Any] = {
                "ev": "T", "sym": syms[s], "x": x, "i": str(tid), "z": tp, "p": p, "s": sz,
                "t": te, "q": q,
            }  # fmt: skip
            if pats[cp]:
                ev["c"] = pats[cp]
            out.append(ev)
        return out

    def ws_frames(self, batch: int = 500) -> Iterator[bytes]:
        """The stream as Polygon WebSocket frames (JSON arrays of ``T`` events)."""
        for i in range(0, len(self), batch):
            yield orjson.dumps(self.ws_events(i, i + batch))

    def rest_results(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """``/v3/trades`` result objects (timestamps in ns) for the given row indices."""
        pats = [list(p) for p in self.patterns]
        out: list[dict[str, Any]] = []
        for te, p, sz, x, tp, tid, q, cp in zip(
            self.ts_event[rows].tolist(), self.price[rows].tolist(), self.size[rows].tolist(),
            self.exchange[rows].tolist(), self.tape[rows].tolist(), self.trade_id[rows].tolist(),
            self.sequence[rows].tolist(), self.cond_pattern[rows].tolist(), strict=True,
        ):  # fmt: skip
            r: dict[str, Any] = {
                "exchange": x, "id": str(tid), "participant_timestamp": te - 150_000,
                "price": p, "sequence_number": q, "sip_timestamp": te, "size": sz, "tape": tp,
            }  # fmt: skip
            if pats[cp]:
                r["conditions"] = pats[cp]
            out.append(r)
        return out

    def labels(self) -> dict[str, Any]:
        return {
            "symbols": list(self.symbols),
            "session_open_ns": self.session_open_ns,
            "anomalies": self.anomalies,
            "regimes": {s: [REGIMES[i] for i in r.tolist()] for s, r in self.regimes.items()},
        }


class _Patterns:
    """Interning of condition tuples → small integer codes."""

    def __init__(self) -> None:
        self.index: dict[tuple[int, ...], int] = {}

    def __call__(self, codes: Sequence[int]) -> int:
        key = tuple(codes)
        if key not in self.index:
            self.index[key] = len(self.index)
        return self.index[key]

    def table(self) -> tuple[tuple[int, ...], ...]:
        return tuple(sorted(self.index, key=self.index.__getitem__))


def session_open_ns(day: dt.date) -> int:
    """09:30 America/New_York on ``day`` as UTC ns."""
    t = dt.datetime.combine(day, dt.time(9, 30), tzinfo=NY)
    return int(t.timestamp()) * 1_000_000_000


def _u_shape(m: np.ndarray, open_amp: float, close_amp: float, floor: float) -> np.ndarray:
    last = SESSION_MINUTES - 1
    return floor + open_amp * np.exp(-m / 25.0) + close_amp * np.exp(-(last - m) / 20.0)


def _regime_path(rng: np.random.Generator, stay: float) -> np.ndarray:
    n = SESSION_MINUTES
    switch = rng.random(n) > stay
    nxt = rng.integers(1, 3, size=n)  # offset to another regime
    out = np.empty(n, dtype=np.int8)
    cur = int(rng.choice(3, p=[0.6, 0.25, 0.15]))
    for i in range(n):
        if switch[i]:
            cur = (cur + int(nxt[i])) % 3
        out[i] = cur
    return out


def _simulate_symbol(
    cfg: SimConfig, k: int, symbol: str, open_ns: int, pats: _Patterns, rng: np.random.Generator
) -> dict[str, Any]:
    ts: Any
    price: Any
    size: Any
    anomaly: Any
    odd: Any
    minute_of: Any
    cond: Any
    exchange: Any
    n_min = SESSION_MINUTES
    minutes = np.arange(n_min, dtype=np.float64)
    regime = _regime_path(rng, cfg.regime_stay)
    if cfg.random_walk:
        regime = np.zeros_like(regime)
    vol_shape = _u_shape(minutes, 2.2, 1.6, 0.6) * _REG_VOLUME[regime]
    lam = vol_shape / vol_shape.sum() * cfg.trades_per_day
    counts = rng.poisson(lam)
    n = int(counts.sum())
    minute_of = np.repeat(np.arange(n_min, dtype=np.int64), counts)
    offs = rng.integers(0, NS_PER_MIN, size=n, dtype=np.int64)
    ts = open_ns + minute_of * NS_PER_MIN + offs
    order = np.argsort(ts, kind="stable")
    ts = ts[order]  # minute_of stays sorted: offsets stay inside their minute

    # Price: per-minute sigma (U-shaped x regime), drift in trending episodes, jumps, bounce.
    lo, hi = cfg.daily_vol
    daily_vol = rng.uniform(lo, hi)
    sig_min = daily_vol / np.sqrt(n_min) * _u_shape(minutes, 1.5, 0.6, 0.7) / 1.1 * _REG_VOL[regime]
    episode = np.cumsum(np.r_[1, np.diff(regime) != 0])
    drift_sign = rng.choice([-1.0, 1.0], size=int(episode.max()) + 1)[episode]
    drift_min = np.where(regime == 1, drift_sign * 0.3 * sig_min, 0.0)
    per_trade_n = np.maximum(counts, 1)[minute_of]
    inc = rng.standard_normal(n) * sig_min[minute_of] / np.sqrt(per_trade_n)
    inc += drift_min[minute_of] / per_trade_n
    jump_min = rng.random(n_min) < _REG_JUMP_P[regime]
    for m in np.flatnonzero(jump_min & (counts > 0)):
        j = int(np.searchsorted(minute_of, m)) + int(rng.integers(0, counts[m]))
        inc[j] += rng.standard_t(3) * 6.0 * sig_min[m]
    base = cfg.start_prices.get(symbol, _KNOWN_PRICES.get(symbol, float(rng.uniform(20, 500))))
    logp = np.log(base) + np.cumsum(inc)
    anomaly = np.zeros(n, dtype=np.int8)
    anomalies: list[dict[str, Any]] = []

    # Flash crashes act on the mid path before the bounce and rounding.
    n_anom = int(rng.poisson(cfg.anomalies_per_day))
    kinds = rng.integers(0, len(ANOMALY_KINDS), size=n_anom)
    starts = rng.integers(20, n_min - 30, size=n_anom)
    extra_rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    spikes: list[int] = []
    for kind, m0 in zip(kinds.tolist(), starts.tolist(), strict=True):
        name = ANOMALY_KINDS[kind]
        if name == "flash_crash":
            dur = int(rng.integers(3, 7))
            t0, t1 = open_ns + m0 * NS_PER_MIN, open_ns + (m0 + dur) * NS_PER_MIN
            sel = (ts >= t0) & (ts < t1)
            if not sel.any():
                continue
            frac = (ts[sel] - t0) / (t1 - t0)
            depth = rng.uniform(0.04, 0.08)
            logp[sel] += np.log1p(-depth * (1 - np.abs(2 * frac - 1)))
            anomaly[sel] = kind + 1
        elif name == "spike":
            t0 = open_ns + m0 * NS_PER_MIN
            j = int(np.searchsorted(ts, t0))
            if j >= n:
                continue
            spikes.append(j)
            t1 = int(ts[j]) + 1
            t0 = int(ts[j])
        else:  # volume_burst: extra large prints within one minute
            t0, t1 = open_ns + m0 * NS_PER_MIN, open_ns + (m0 + 1) * NS_PER_MIN
            nb = int(rng.integers(40, 120))
            bts = np.sort(rng.integers(t0, t1, size=nb, dtype=np.int64))
            bsz = (rng.integers(20, 200, size=nb) * 100).astype(np.int64)
            extra_rows.append((bts, bsz, np.full(nb, kind + 1, dtype=np.int8)))
        anomalies.append({"symbol": symbol, "kind": name, "start_ns": int(t0), "end_ns": int(t1)})

    mid = np.exp(logp)
    half_spread = np.maximum(0.005, mid * 0.00005)
    price = mid + np.where(rng.random(n) < 0.5, -half_spread, half_spread)
    for j in spikes:
        price[j] *= 1.0 + rng.choice([-1.0, 1.0]) * rng.uniform(0.03, 0.08)
        anomaly[j] = ANOMALY_KINDS.index("spike") + 1

    # Sizes: odd lots, round lots with a Pareto tail, some mixed lots.
    u = rng.random(n)
    odd = u < cfg.odd_lot_frac
    size = np.empty(n, dtype=np.int64)
    size[odd] = np.minimum(99, 1 + rng.geometric(0.06, size=int(odd.sum())))
    n_rl = int((~odd).sum())
    lots = np.minimum(1 + np.floor(rng.pareto(1.4, size=n_rl)), 5000).astype(np.int64)
    mixed = rng.random(n_rl) < 0.15
    size[~odd] = lots * 100 + np.where(mixed, rng.integers(1, 100, size=n_rl), 0)

    if extra_rows:
        bts = np.concatenate([e[0] for e in extra_rows])
        bsz = np.concatenate([e[1] for e in extra_rows])
        ban = np.concatenate([e[2] for e in extra_rows])
        idx = np.clip(np.searchsorted(ts, bts), 0, n - 1)
        ts = np.concatenate([ts, bts])
        price = np.concatenate([price, price[idx]])
        size = np.concatenate([size, bsz])
        anomaly = np.concatenate([anomaly, ban])
        odd = np.concatenate([odd, np.zeros(len(bts), dtype=bool)])
        minute_of = np.concatenate([minute_of, (bts - open_ns) // NS_PER_MIN])
        order = np.argsort(ts, kind="stable")
        ts, price, size, anomaly, odd, minute_of = (
            a[order] for a in (ts, price, size, anomaly, odd, minute_of)
        )
        n = len(ts)
    price = np.round(np.where(price >= 1.0, price, 1.0), 2)

    # Conditions: odd lots carry 37; round lots mostly regular, some ISO/exempt/off-market.
    regular = pats(())
    rl_codes = [pats(c) for c in [(), (14,), (14, 41), (41,), (53,), (2,), (10,), (7,)]]
    rl_p = np.array([0.78, 0.10, 0.05, 0.03, 0.02, 0.01, 0.007, 0.003])
    ol_codes = [pats(c) for c in [(37,), (14, 37)]]
    cond = np.asarray(rl_codes, dtype=np.int16)[rng.choice(len(rl_codes), size=n, p=rl_p)]
    cond[odd] = np.asarray(ol_codes, dtype=np.int16)[
        rng.choice(2, size=int(odd.sum()), p=[0.85, 0.15])
    ]
    cond[anomaly > 0] = np.where(odd[anomaly > 0], ol_codes[0], regular)
    exchange = rng.choice(_EXCHANGES, size=n, p=_EXCHANGE_P / _EXCHANGE_P.sum())
    listing = 12 if k % 3 else 11  # official open/close prints from the listing market
    tape = 2 if symbol == "SPY" else (1 if listing == 11 else 3)

    extra: list[dict[str, Any]] = []
    if n:
        close_ns = open_ns + n_min * NS_PER_MIN
        extra.append({"ts": open_ns + 1_000_000, "price": float(price[0]), "cond": (16,)})
        extra.append({"ts": close_ns + 2_000_000, "price": float(price[-1]), "cond": (15,)})
    if cfg.extended_hours and n:
        for lo_ns, hi_ns, edge in (
            (open_ns - 330 * NS_PER_MIN, open_ns, 0),
            (open_ns + n_min * NS_PER_MIN, open_ns + (n_min + 240) * NS_PER_MIN, -1),
        ):
            ne = max(1, cfg.trades_per_day // 200)
            ets = np.sort(rng.integers(lo_ns, hi_ns, size=ne, dtype=np.int64))
            eps = np.round(price[edge] * np.exp(np.cumsum(rng.standard_normal(ne) * 0.0005)), 2)
            extra.extend(
                {"ts": int(a), "price": float(b), "cond": (12,)}
                for a, b in zip(ets, eps, strict=True)
            )
    if extra:
        ets = np.array([e["ts"] for e in extra], dtype=np.int64)
        ts = np.concatenate([ts, ets])
        price = np.concatenate([price, [e["price"] for e in extra]])
        size = np.concatenate([size, rng.integers(1, 50, size=len(extra)) * 100])
        cond = np.concatenate([cond, np.array([pats(e["cond"]) for e in extra], dtype=np.int16)])
        exchange = np.concatenate(
            [exchange, np.where(np.array([e["cond"] == (12,) for e in extra]), 4, listing)]
        ).astype(np.int16)
        anomaly = np.concatenate([anomaly, np.zeros(len(extra), dtype=np.int8)])
        em = np.clip((ets - open_ns) // NS_PER_MIN, 0, n_min - 1)
        minute_of = np.concatenate([minute_of, em])
        order = np.argsort(ts, kind="stable")
        ts, price, size, cond, exchange, anomaly, minute_of = (
            a[order] for a in (ts, price, size, cond, exchange, anomaly, minute_of)
        )
        n = len(ts)

    # Delivery: latency of a few ms; late prints arrive seconds to minutes later, flagged 33.
    arrival = ts + rng.integers(200_000, 3_000_000, size=n, dtype=np.int64)
    late = rng.random(n) < cfg.late_frac
    late &= anomaly == 0
    # Reporting delays: lognormal around 20 s, capped at MAX_LATE_S (a consumer's gap fill
    # looks back that far, see ingest gap_lookback_s).
    delay_s = np.minimum(
        np.exp(rng.normal(np.log(20.0), 1.0, size=int(late.sum()))), cfg.max_late_s
    )
    delay = (np.maximum(delay_s, 1.5) * 1e9).astype(np.int64)
    arrival[late] = ts[late] + delay
    if late.any():
        table = pats.table()
        remap = {i: pats((*table[i], 33)) for i in np.unique(cond[late]).tolist()}
        cond[late] = np.array([remap[c] for c in cond[late].tolist()], dtype=np.int16)
    # SIP sequence numbers follow delivery order, increasing with gaps.
    by_arrival = np.argsort(arrival, kind="stable")
    seq = np.empty(n, dtype=np.int64)
    seq[by_arrival] = int(rng.integers(1_000_000, 5_000_000)) + np.cumsum(
        rng.geometric(0.7, size=n)
    )
    trade_id = (k + 1) * 10_000_000_000 + np.arange(1, n + 1, dtype=np.int64)

    cols = {
        "sym": np.full(n, k, dtype=np.int16), "ts_event": ts, "arrival": arrival,
        "price": price, "size": size, "exchange": exchange.astype(np.int16),
        "tape": np.full(n, tape, dtype=np.int8),
        "trade_id": trade_id, "sequence": seq, "cond_pattern": cond.astype(np.int16),
        "is_late": late, "is_duplicate": np.zeros(n, dtype=bool), "anomaly": anomaly,
        "regime": regime[minute_of],
    }  # fmt: skip
    # Duplicates: the same identity delivered again a little later.
    dup = np.flatnonzero(rng.random(n) < cfg.duplicate_frac)
    if len(dup):
        for name, arr in cols.items():
            cols[name] = np.concatenate([arr, arr[dup]])
        cols["arrival"][n:] += rng.integers(1_000_000, 2_000_000_000, size=len(dup), dtype=np.int64)
        cols["is_duplicate"][n:] = True
    return {"cols": cols, "regime": regime, "anomalies": anomalies}


def simulate(cfg: SimConfig | None = None) -> SimulatedMarket:
    """Generate one session for every symbol of ``cfg``; deterministic for a given config."""
    cfg = cfg or SimConfig()
    if not cfg.symbols:
        raise ValueError("at least one symbol is required")
    open_ns = session_open_ns(cfg.date)
    pats = _Patterns()
    pats(())
    seeds = np.random.SeedSequence(cfg.seed).spawn(len(cfg.symbols))
    parts = [
        _simulate_symbol(cfg, k, s, open_ns, pats, np.random.default_rng(seeds[k]))
        for k, s in enumerate(cfg.symbols)
    ]
    names = list(parts[0]["cols"])
    merged = {c: np.concatenate([p["cols"][c] for p in parts]) for c in names}
    order = np.lexsort((merged["sym"], merged["arrival"]))
    merged = {c: a[order] for c, a in merged.items()}
    return SimulatedMarket(
        symbols=tuple(cfg.symbols),
        patterns=pats.table(),
        regimes={s: p["regime"] for s, p in zip(cfg.symbols, parts, strict=True)},
        session_open_ns=open_ns,
        anomalies=[a for p in parts for a in p["anomalies"]],
        **merged,
    )


def write(market: SimulatedMarket, out: Path, fmt: str = "parquet") -> list[Path]:
    """Write trades (``parquet``, ``jsonl`` of trade events, or ``ws`` frames one per line) and a
    ``<stem>.labels.json`` with regimes and anomalies. Returns the written paths."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        market.to_frame().to_parquet(out, index=False)
    elif fmt == "jsonl":
        with out.open("wb") as f:
            for e in market.events():
                f.write(orjson.dumps(e) + b"\n")
    elif fmt == "ws":
        with out.open("wb") as f:
            for frame in market.ws_frames():
                f.write(frame + b"\n")
    else:
        raise ValueError(f"unknown format {fmt!r}: expected parquet, jsonl or ws")
    labels = out.with_name(out.stem + ".labels.json")
    labels.write_text(json.dumps(market.labels()))
    return [out, labels]


def run(
    settings: Any,
    *,
    seed: int = 7,
    out: Path = Path("sim/trades.parquet"),
    fmt: str = "parquet",
    date: dt.date | None = None,
    trades_per_day: int = 50_000,
    symbols: Sequence[str] | None = None,
) -> list[Path]:
    """Entry point for ``signalstack simulate``: symbols default to ``settings.market.symbols``."""
    syms = tuple(symbols) if symbols else tuple(settings.market.symbols)
    cfg = SimConfig(
        seed=seed,
        symbols=syms,
        date=date or SimConfig.date,
        trades_per_day=trades_per_day,
        extended_hours=bool(settings.market.extended_hours),
    )
    return write(simulate(cfg), out, fmt)
