"""The tapes the fake Polygon server replays: a simulated session or a recorded stream.

A tape gives its trades in delivery order as WebSocket events and REST results, and as numpy
columns (:class:`TapeColumns`) with each trade's eligibility flags under the consolidated
condition update rules (the features library's table), which REST bars, quotes and ``AM`` events
read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from signalstack.features.conditions import bundled_rules
from signalstack.marketdata.simulator import SimConfig, SimulatedMarket, simulate

I8 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class TapeColumns:
    """Every tape row as numpy columns (delivery order): what REST, bars and quotes read."""

    sym: npt.NDArray[np.int32]  # index into Tape.symbols
    ts: I8  # SIP time, ns (tape time)
    price: npt.NDArray[np.float64]
    size: npt.NDArray[np.float64]
    seq: I8
    flags: npt.NDArray[np.uint8]  # eligibility (signalstack.features.conditions)
    duplicate: npt.NDArray[np.bool_]  # a repeat of an identity delivered earlier
    tape: npt.NDArray[np.int8]  # SIP tape (1 A, 2 B, 3 C)

    def __len__(self) -> int:
        return len(self.ts)


class Tape:
    """The trades the fake market publishes, in delivery order."""

    symbols: tuple[str, ...]

    def __len__(self) -> int:
        raise NotImplementedError

    def ws_events(self, start: int, stop: int) -> list[dict[str, Any]]:
        """WebSocket ``T`` events for rows [start, stop) (``t`` in ms, tape time)."""
        raise NotImplementedError

    def delays_ns(self, start: int, stop: int) -> list[int]:
        """Reporting delay (arrival − SIP time) of each row, kept when restamping."""
        return [0] * (stop - start)

    def ts_ns(self, start: int, stop: int) -> list[int]:
        return list(self.columns.ts[start:stop].tolist())

    def rest_results(self, rows: Sequence[int], ts: Sequence[int]) -> list[dict[str, Any]]:
        raise NotImplementedError

    @cached_property
    def columns(self) -> TapeColumns:
        return self._columns()

    def _columns(self) -> TapeColumns:
        raise NotImplementedError


class SimTape(Tape):
    def __init__(self, market: SimulatedMarket) -> None:
        self.m = market
        self.symbols = market.symbols
        self._delay = market.arrival - market.ts_event

    def __len__(self) -> int:
        return len(self.m)

    def ws_events(self, start: int, stop: int) -> list[dict[str, Any]]:
        return self.m.ws_events(start, stop)

    def delays_ns(self, start: int, stop: int) -> list[int]:
        return list(self._delay[start:stop].tolist())

    def rest_results(self, rows: Sequence[int], ts: Sequence[int]) -> list[dict[str, Any]]:
        out = self.m.rest_results(np.asarray(rows, dtype=np.int64))
        for r, t in zip(out, ts, strict=True):
            r["sip_timestamp"] = t
            r["participant_timestamp"] = t - 150_000
        return out

    def _columns(self) -> TapeColumns:
        m = self.m
        pats = np.empty(len(m.patterns), dtype=object)
        pats[:] = [list(p) for p in m.patterns]
        flags = bundled_rules().flags(pats).flags
        return TapeColumns(
            sym=m.sym.astype(np.int32), ts=m.ts_event, price=m.price,
            size=m.size.astype(np.float64), seq=m.sequence, flags=flags[m.cond_pattern],
            duplicate=m.is_duplicate, tape=m.tape.astype(np.int8),
        )  # fmt: skip


class RecordedTape(Tape):
    """A recorded stream: a file of WebSocket frames (one JSON array per line, or one array)."""

    def __init__(self, path: Path) -> None:
        text = path.read_bytes().strip()
        events: list[dict[str, Any]] = []
        lines = [text] if text.startswith(b"[") and b"\n" not in text else text.splitlines()
        for line in lines:
            if line.strip():
                frame = orjson.loads(line)
                events.extend(e for e in frame if isinstance(e, dict) and e.get("ev") == "T")
        self.events = events
        self.symbols = tuple(sorted({e["sym"] for e in events}))

    def __len__(self) -> int:
        return len(self.events)

    def ws_events(self, start: int, stop: int) -> list[dict[str, Any]]:
        return [dict(e) for e in self.events[start:stop]]

    def rest_results(self, rows: Sequence[int], ts: Sequence[int]) -> list[dict[str, Any]]:
        out = []
        for i, t in zip(rows, ts, strict=True):
            e = self.events[i]
            r = {
                "exchange": e["x"], "id": e["i"], "participant_timestamp": t, "price": e["p"],
                "sequence_number": e["q"], "sip_timestamp": t, "size": e["s"], "tape": e.get("z"),
            }  # fmt: skip
            if e.get("c"):
                r["conditions"] = list(e["c"])
            out.append(r)
        return out

    def _columns(self) -> TapeColumns:
        ev = self.events
        code = {s: k for k, s in enumerate(self.symbols)}
        conds = np.empty(len(ev), dtype=object)
        conds[:] = [list(e.get("c") or ()) for e in ev]
        seen: set[tuple[str, int, str]] = set()
        dup = np.zeros(len(ev), dtype=bool)
        for k, e in enumerate(ev):
            ident = (e["sym"], e["x"], e["i"])
            dup[k] = ident in seen
            seen.add(ident)
        return TapeColumns(
            sym=np.array([code[e["sym"]] for e in ev], dtype=np.int32),
            ts=np.array([e["t"] * 1_000_000 for e in ev], dtype=np.int64),
            price=np.array([e["p"] for e in ev], dtype=np.float64),
            size=np.array([e["s"] for e in ev], dtype=np.float64),
            seq=np.array([e.get("q", 0) for e in ev], dtype=np.int64),
            flags=bundled_rules().flags(conds).flags,
            duplicate=dup,
            tape=np.array([e.get("z") or 3 for e in ev], dtype=np.int8),
        )


def build_tape(
    symbols: Sequence[str],
    *,
    date: dt.date | None = None,
    seed: int = 7,
    trades_per_day: int = 50_000,
    recorded: Path | None = None,
) -> Tape:
    """The tape a standalone server plays: a recorded file, or a simulated session."""
    if recorded is not None:
        return RecordedTape(recorded)
    cfg = SimConfig(
        seed=seed, symbols=tuple(symbols), date=date or SimConfig.date,
        trades_per_day=trades_per_day,
    )  # fmt: skip
    return SimTape(simulate(cfg))
