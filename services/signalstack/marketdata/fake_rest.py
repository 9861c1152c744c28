"""The fake Polygon server's REST API: the served-trade index and the endpoint handlers.

:class:`FakeRestApi` answers every non-upgrade HTTP request on the server's port (websockets'
``process_request`` hook) from :class:`Published`, the index of the trades REST serves: the
whole day from the start in history mode, what has been sent in live mode.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from functools import cached_property
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, quote, urlsplit

import numpy as np
import numpy.typing as npt
import orjson
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from signalstack.logs import get_logger
from signalstack.marketdata.conditions import bundled_conditions_response
from signalstack.marketdata.fake_query import (
    MAX_MS,
    BadRequestError,
    agg_bound,
    bucketer,
    check_choice,
    int_param,
    loop_id,
    position,
    time_bounds,
)
from signalstack.marketdata.fake_query import bars as build_bars
from signalstack.marketdata.fake_tape import Tape

if TYPE_CHECKING:
    from signalstack.marketdata.fake_polygon import FakeConfig

log = get_logger(__name__)

MAX_LIMIT: Final = 50_000
RATE_LIMIT_TEXT: Final = (
    "You've exceeded the maximum requests per minute, please wait or upgrade your "
    "subscription to continue. https://polygon.io/pricing"
)
QUOTE_LEAD_NS: Final = 1_000  # a trade's quote is stamped this long before it

I8 = npt.NDArray[np.int64]


class _SymbolIndex:
    """Served trades of one symbol: (ts_ns, gid) sorted; gid = loop × len(tape) + row."""

    def __init__(self) -> None:
        self._chunks: list[tuple[I8, I8]] = []
        self._ts: I8 = np.zeros(0, np.int64)
        self._gid: I8 = np.zeros(0, np.int64)

    def add(self, ts: I8, gid: I8) -> None:
        self._chunks.append((ts, gid))

    def drop_before(self, ts_ns: int) -> int:
        """Forget the trades served before ``ts_ns``; returns how many."""
        ts, gid = self.arrays()
        cut = int(np.searchsorted(ts, ts_ns, "left"))
        self._ts, self._gid = ts[cut:], gid[cut:]
        return cut

    def arrays(self) -> tuple[I8, I8]:
        if self._chunks:
            ts = np.concatenate([self._ts, *(c[0] for c in self._chunks)])
            gid = np.concatenate([self._gid, *(c[1] for c in self._chunks)])
            self._chunks.clear()
            order = np.lexsort((gid, ts))
            self._ts, self._gid = ts[order], gid[order]
        return self._ts, self._gid


class Published:
    """Per-symbol index of the trades REST serves."""

    def __init__(self, symbols: Sequence[str]) -> None:
        self.symbols = tuple(symbols)
        self.index = {s: _SymbolIndex() for s in symbols}
        self.count = 0

    def add(self, sym: npt.NDArray[np.int32], ts: I8, gid: I8) -> None:
        if len(ts) == 0:
            return
        for k in np.unique(sym).tolist():
            m = sym == k
            self.index[self.symbols[k]].add(ts[m], gid[m])
        self.count += len(ts)

    def drop_before(self, ts_ns: int) -> None:
        """Forget every trade served before ``ts_ns`` (a live replay that loops)."""
        self.count -= sum(idx.drop_before(ts_ns) for idx in self.index.values())

    def arrays(self, sym: str) -> tuple[I8, I8]:
        idx = self.index.get(sym)
        return idx.arrays() if idx else (np.zeros(0, np.int64), np.zeros(0, np.int64))

    def get(self, sym: str) -> list[tuple[int, int]]:
        """(ts_ns, gid) of every served trade of ``sym``, sorted."""
        ts, gid = self.arrays(sym)
        return list(zip(ts.tolist(), gid.tolist(), strict=True))


class FakeRestApi:
    """The REST endpoints, over ``published`` (see the module docstring)."""

    def __init__(
        self, tape: Tape, cfg: FakeConfig, published: Published, url: Callable[[], str]
    ) -> None:
        self.tape = tape
        self.cfg = cfg
        self.published = published
        self._url = url  # the server's base URL, for next_url
        self.requests = 0
        self.throttled = 0
        self.trade_requests = 0  # /v3/trades requests answered or held (rest_hold_trades)
        self.held = threading.Event()  # the rest_hold_trades request has arrived
        self.release = threading.Event()  # answer it

    def _json(self, status: int, body: Any, extra: dict[str, str] | None = None) -> Response:
        headers = Headers({"Content-Type": "application/json", "Connection": "close"})
        for k, v in (extra or {}).items():
            headers[k] = v
        data = orjson.dumps(body)
        headers["Content-Length"] = str(len(data))
        return Response(status, HTTPStatus(status).phrase, headers, data)

    def process_request(
        self, conn: ServerConnection, req: Request
    ) -> Response | Awaitable[Response] | None:
        """websockets' ``process_request`` hook: non-upgrade requests are answered as REST
        (the ``rest_hold_trades`` request as an awaitable that waits for the release)."""
        resp = self._answer(req)
        if resp is None or not urlsplit(req.path).path.startswith("/v3/trades/"):
            return resp
        self.trade_requests += 1
        if self.cfg.rest_hold_trades != self.trade_requests:
            return resp
        return self._held(resp)

    async def _held(self, resp: Response) -> Response:
        self.held.set()
        await asyncio.get_running_loop().run_in_executor(None, self.release.wait)
        return resp

    def _answer(self, req: Request) -> Response | None:
        if req.headers.get("Upgrade", "").lower() == "websocket":
            return None
        url = urlsplit(req.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        key = (
            q.get("apiKey") or req.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        )
        rid = uuid.uuid4().hex
        if key not in self.cfg.api_keys:
            return self._json(
                401, {"status": "ERROR", "request_id": rid, "error": "Unknown API Key"}
            )
        self.requests += 1
        n = self.requests
        cfg = self.cfg
        ra = {"Retry-After": cfg.retry_after} if cfg.retry_after is not None else {}
        if cfg.rest_429_every and n % cfg.rest_429_every == 0:
            self.throttled += 1
            return self._json(
                429,
                {"status": "ERROR", "request_id": rid,
                 "error": RATE_LIMIT_TEXT},
                ra,
            )  # fmt: skip
        if cfg.rest_503_every and n % cfg.rest_503_every == 0:
            self.throttled += 1
            return self._json(
                503, {"status": "ERROR", "request_id": rid, "error": "unavailable"}, ra
            )
        try:
            body = self._route(url.path.strip("/").split("/"), q, rid)
        except BadRequestError as err:
            return self._json(400, {"status": "ERROR", "request_id": rid, "error": str(err)})
        except Exception:  # a bug here must not look like a client error or kill the server
            log.exception("fake_polygon_rest_error", path=url.path)
            return self._json(
                500,
                {"status": "ERROR", "request_id": rid, "error": "internal error (fake server)"},
            )
        if body is None:
            return self._json(
                404, {"status": "NOT_FOUND", "request_id": rid, "message": "not found"}
            )
        status, payload = body
        return self._json(status, payload)

    def _route(
        self, parts: list[str], q: dict[str, str], rid: str
    ) -> tuple[int, dict[str, Any]] | None:
        if parts[:2] == ["v3", "trades"] and len(parts) == 3:
            return 200, self._ticks(parts[2], q, rid, quotes=False)
        if parts[:2] == ["v3", "quotes"] and len(parts) == 3:
            return 200, self._ticks(parts[2], q, rid, quotes=True)
        if parts[:3] == ["v2", "aggs", "ticker"] and len(parts) == 9 and parts[4] == "range":
            return 200, self._aggs(parts[3], parts[5], parts[6], parts[7], parts[8], q, rid)
        if parts[:3] == ["v2", "aggs", "ticker"] and len(parts) == 5 and parts[4] == "prev":
            return 200, self._prev_close(parts[3], q, rid)
        if parts[:3] == ["v2", "last", "trade"] and len(parts) == 4:
            return self._last_trade(parts[3], rid)
        if parts == ["v3", "reference", "conditions"]:
            return 200, self._conditions(q, rid)
        if parts == ["v1", "marketstatus", "now"]:
            return 200, self._market_status()
        return None

    def _market_status(self) -> dict[str, Any]:
        return {
            "market": "open",
            "serverTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "exchanges": {"nyse": "open", "nasdaq": "open", "otc": "open"},
            "earlyHours": False,
            "afterHours": False,
        }

    def _cursor(self, state: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(state)).decode().rstrip("=")

    def _uncursor(self, cur: str) -> dict[str, Any]:
        try:
            state = orjson.loads(base64.urlsafe_b64decode(cur + "=" * (-len(cur) % 4)))
        except (binascii.Error, ValueError) as err:
            raise BadRequestError("cursor: not a cursor this server issued") from err
        if not isinstance(state, dict):
            raise BadRequestError("cursor: not a cursor this server issued")
        return state

    def _rows(self, gid: I8) -> tuple[I8, I8]:
        """Tape rows and loop numbers of served ids."""
        n = max(1, len(self.tape))
        return gid % n, gid // n

    def _ticks(self, sym: str, q: dict[str, str], rid: str, *, quotes: bool) -> dict[str, Any]:
        """``/v3/trades/{T}`` or ``/v3/quotes/{T}``: filtered, ordered, paged by cursor."""
        if "cursor" in q:
            state = self._uncursor(q["cursor"])
        else:
            state = {k: q[k] for k in q if k.startswith("timestamp") or k in ("order", "limit")}
            check_choice("sort", q.get("sort", "timestamp"), ("timestamp",))
        order = check_choice("order", str(state.get("order", "desc")), ("asc", "desc"))
        limit = min(int_param("limit", state.get("limit", 1000), 1, MAX_LIMIT),
                    self.cfg.rest_page_limit_cap)  # fmt: skip
        ts, gid = self.published.arrays(sym)
        if quotes:
            ts = ts - QUOTE_LEAD_NS
        lo, hi = time_bounds(ts, state)
        after = state.get("after")  # cursor position: last (ts, gid) returned
        if order == "asc":
            if after is not None:
                lo = max(lo, position(ts, gid, int(after[0]), int(after[1]), "right"))
            sel = np.arange(lo, min(hi, lo + limit))
            more = lo + len(sel) < hi
        else:
            if after is not None:
                hi = min(hi, position(ts, gid, int(after[0]), int(after[1]), "left"))
            sel = np.arange(max(lo, hi - limit), hi)[::-1]
            more = hi - len(sel) > lo
        sts, sgid = ts[sel], gid[sel]
        results = self._quotes(sgid, sts) if quotes else self._trade_results(sgid, sts)
        body: dict[str, Any] = {"results": results, "status": "OK", "request_id": rid}
        if more and len(sel):
            state = {**state, "after": [int(sts[-1]), int(sgid[-1])]}
            kind = "quotes" if quotes else "trades"
            body["next_url"] = f"{self._url()}/v3/{kind}/{quote(sym)}?cursor={self._cursor(state)}"
        return body

    def _trade_results(self, gid: I8, ts: I8) -> list[dict[str, Any]]:
        rows, loops = self._rows(gid)
        out = self.tape.rest_results(rows.tolist(), ts.tolist())
        for r, lp in zip(out, loops.tolist(), strict=True):
            if lp:
                r["id"] = loop_id(r["id"], lp)
        return out

    @cached_property
    def _spread_model(self) -> dict[str, npt.NDArray[Any]]:
        """A seeded NBBO around each trade: the trade inside a 1–3 tick half-spread each side,
        sizes in shares by the round-lot tiers (POLYGON.md), a few exchanges."""
        cols = self.tape.columns
        n = len(cols)
        rng = np.random.default_rng(self.cfg.seed)
        lot = np.select(
            [cols.price <= 250, cols.price <= 1_000, cols.price <= 10_000], [100, 40, 10], 1
        )
        return {
            "bid_ticks": rng.choice([1, 1, 1, 2, 3], size=n),
            "ask_ticks": rng.choice([1, 1, 1, 2, 3], size=n),
            "bid_size": lot * rng.geometric(0.3, size=n),
            "ask_size": lot * rng.geometric(0.3, size=n),
            "bid_x": rng.choice([1, 4, 8, 11, 12, 15, 19], size=n),
            "ask_x": rng.choice([1, 4, 8, 11, 12, 15, 19], size=n),
        }

    def _quotes(self, gid: I8, ts: I8) -> list[dict[str, Any]]:
        rows, _ = self._rows(gid)
        m = self._spread_model
        cols = self.tape.columns
        p = cols.price[rows]
        bid = np.round(np.maximum(0.01, p - 0.01 * m["bid_ticks"][rows]), 2)
        ask = np.round(p + 0.01 * m["ask_ticks"][rows], 2)
        out = []
        for t, b, a, bs, az, bx, ax, sq, z in zip(
            ts.tolist(), bid.tolist(), ask.tolist(), m["bid_size"][rows].tolist(),
            m["ask_size"][rows].tolist(), m["bid_x"][rows].tolist(), m["ask_x"][rows].tolist(),
            cols.seq[rows].tolist(), cols.tape[rows].tolist(), strict=True,
        ):  # fmt: skip
            out.append({
                "ask_exchange": ax, "ask_price": a, "ask_size": az, "bid_exchange": bx,
                "bid_price": b, "bid_size": bs, "participant_timestamp": t - 50_000,
                "sequence_number": sq, "sip_timestamp": t, "tape": z,
            })  # fmt: skip
        return out

    def _last_trade(self, sym: str, rid: str) -> tuple[int, dict[str, Any]]:
        ts, gid = self.published.arrays(sym)
        if len(ts) == 0:
            return 404, {"status": "NOT_FOUND", "request_id": rid, "message": "Data not found."}
        r = self._trade_results(gid[-1:], ts[-1:])[0]
        res: dict[str, Any] = {
            "T": sym, "i": r["id"], "p": r["price"], "q": r["sequence_number"], "s": r["size"],
            "t": r["sip_timestamp"], "x": r["exchange"], "y": r["participant_timestamp"],
            "z": r.get("tape"),
        }  # fmt: skip
        if r.get("conditions"):
            res["c"] = r["conditions"]
        return 200, {"request_id": rid, "status": "OK", "results": res}

    def _aggs(
        self, sym: str, mult: str, span: str, frm: str, to: str, q: dict[str, str], rid: str
    ) -> dict[str, Any]:
        width = int_param("multiplier", mult, 1, 1_000_000)
        bucket = bucketer(span, width)
        if "cursor" in q:
            st = self._uncursor(q["cursor"])
        else:
            st = {
                "from": agg_bound("from", frm, end=False), "to": agg_bound("to", to, end=True),
                "sort": check_choice("sort", q.get("sort", "asc"), ("asc", "desc")),
                "limit": int_param("limit", q.get("limit", 5000), 1, MAX_LIMIT),
            }  # fmt: skip
        check_choice("adjusted", q.get("adjusted", "true"), ("true", "false"))
        ts, gid = self.published.arrays(sym)
        rows, _ = self._rows(gid)
        bars = build_bars(self.tape.columns, ts, rows, bucket, int(st["from"]), int(st["to"]))
        if st["sort"] == "desc":
            bars.reverse()
        after = st.get("after")
        if after is not None:
            bars = [b for b in bars if (b["t"] > after if st["sort"] == "asc" else b["t"] < after)]
        page = bars[: int(st["limit"])]
        body = _aggs_body(sym, page, q, rid)
        if len(bars) > len(page):
            nxt = {**st, "after": page[-1]["t"]}
            body["next_url"] = (
                f"{self._url()}/v2/aggs/ticker/{quote(sym)}/range/{mult}/{span}/{frm}/{to}"
                f"?cursor={self._cursor(nxt)}"
            )
        return body

    def _prev_close(self, sym: str, q: dict[str, str], rid: str) -> dict[str, Any]:
        """The day bar of the tape's own session (the fake serves one day: the previous one)."""
        check_choice("adjusted", q.get("adjusted", "true"), ("true", "false"))
        cols = self.tape.columns
        results: list[dict[str, Any]] = []
        if sym in self.tape.symbols:
            rows = np.flatnonzero((cols.sym == self.tape.symbols.index(sym)) & ~cols.duplicate)
            bars = build_bars(cols, cols.ts[rows], rows, bucketer("day", 1), 0, MAX_MS)
            results = [{"T": sym, **b} for b in bars[-1:]]
        return _aggs_body(sym, results, q, rid)

    def _conditions(self, q: dict[str, str], rid: str) -> dict[str, Any]:
        if "cursor" in q:
            st = self._uncursor(q["cursor"])
        else:
            st = {
                "off": 0,
                "limit": min(int_param("limit", q.get("limit", 10), 1, 1000),
                             self.cfg.rest_page_limit_cap),
                **{k: q[k] for k in ("asset_class", "data_type") if k in q},
            }  # fmt: skip
        full = [
            r
            for r in bundled_conditions_response()["results"]
            if ("asset_class" not in st or r.get("asset_class") == st["asset_class"])
            and ("data_type" not in st or st["data_type"] in (r.get("data_types") or ()))
        ]
        off, limit = int(st["off"]), int(st["limit"])
        page = full[off : off + limit]
        body: dict[str, Any] = {
            "results": page,
            "status": "OK",
            "request_id": rid,
            "count": len(page),
        }
        if off + limit < len(full):
            cur = self._cursor({**st, "off": off + limit})
            body["next_url"] = f"{self._url()}/v3/reference/conditions?cursor={cur}"
        return body


def _aggs_body(
    sym: str, results: list[dict[str, Any]], q: dict[str, str], rid: str
) -> dict[str, Any]:
    """An aggregates response (range or previous close); ``results`` only when there are any,
    as Polygon answers."""
    body: dict[str, Any] = {
        "ticker": sym, "queryCount": len(results), "resultsCount": len(results),
        "adjusted": q.get("adjusted", "true") == "true", "status": "OK", "request_id": rid,
    }  # fmt: skip
    if results:
        body["results"] = results
    return body
