"""Polygon REST client (httpx, async): trades, aggregates, condition reference.

- Auth by ``Authorization: Bearer`` (the SDK's way) or ``?apiKey=``; the key is added again to
  every ``next_url`` follow-up, which carries a cursor but no key.
- ``next_url`` is followed by its path and query on the configured base URL, as the official
  client does, never to the host it names: a response recorded from (or rewritten by) another
  host must not send a client pointed at a proxy, a recording or the fake server elsewhere.
- Each page comes as a :class:`Page`: its results (a list) with the page's ``status``. ``DELAYED``
  (a plan without real-time data) is logged once and kept on the page; a 200 whose status is
  ``ERROR`` raises :class:`PolygonRestError` rather than reading as an empty page.
- 413/429/499/5xx are retried with exponential backoff and jitter; a ``Retry-After`` header
  (seconds or an HTTP date) wins over the computed delay. 401/403 raise
  :class:`PolygonAuthError` at once; other 4xx raise :class:`PolygonRestError`.
- Every request, follow-ups included, passes through a token-bucket :class:`RateLimiter` set to
  the plan's rate (Basic: 5 per minute; paid plans: Polygon suggests < 100/s).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import httpx
import orjson

from signalstack.logs import get_logger
from signalstack.marketdata.conditions import ConditionTable, load_bundled_conditions
from signalstack.marketdata.errors import PolygonAuthError, PolygonRestError

log = get_logger(__name__)

RETRY_STATUSES: Final = frozenset({413, 429, 499, 500, 502, 503, 504})
PLAN_RATES: Final = {"basic": 5 / 60, "starter": 100.0, "developer": 100.0, "advanced": 100.0}


# ``/v2/last/trade`` answers in short keys; the long names are those of ``/v3/trades`` results.
LAST_TRADE_FIELDS: Final = {
    "c": "conditions", "e": "correction", "x": "exchange", "i": "id",
    "y": "participant_timestamp", "p": "price", "q": "sequence_number", "t": "sip_timestamp",
    "s": "size", "z": "tape", "r": "trf_id", "f": "trf_timestamp", "ds": "decimal_size",
}  # fmt: skip


class Page(list[dict[str, Any]]):
    """One page of results, with the page's ``status`` (``OK``, ``DELAYED``, ...)."""

    def __init__(
        self, results: list[dict[str, Any]], status: str = "OK", request_id: str | None = None
    ) -> None:
        super().__init__(results)
        self.status = status
        self.request_id = request_id

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Page:
        rid = body.get("request_id")
        return cls(
            list(body.get("results") or []),
            str(body.get("status", "OK")),
            str(rid) if rid is not None else None,
        )


class RateLimiter:
    """Async token bucket: ``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(
        self, rate: float, burst: float | None = None, clock: Any = time.monotonic
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    async def acquire(self) -> None:
        async with self._lock:
            self._refill()
            while self._tokens < 1.0:
                await asyncio.sleep((1.0 - self._tokens) / self.rate)
                self._refill()
            self._tokens -= 1.0


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Parse a Retry-After header: delta-seconds or an HTTP date. None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng.uniform(0.0, min(cap, base * (2**attempt)))


class PolygonRestClient:
    """Async client for the Polygon stocks REST API (or the fake server)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        rate_per_s: float = 50.0,
        burst: float | None = None,
        auth: Literal["header", "query"] = "header",
        max_retries: int = 5,
        backoff_base: float = 0.1,
        backoff_cap: float = 30.0,
        timeout: float = 30.0,
        seed: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self._auth = auth
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.limiter = RateLimiter(rate_per_s, burst)
        self._rng = random.Random(seed)  # noqa: S311 - jitter, not crypto
        headers = {"Authorization": f"Bearer {api_key}"} if auth == "header" else {}
        self._http = httpx.AsyncClient(headers=headers, timeout=timeout, transport=transport)
        self.requests = 0
        self.retries = 0
        self.delayed_pages = 0  # pages answered with status DELAYED

    @classmethod
    def from_settings(cls, polygon: Any, **kw: Any) -> PolygonRestClient:
        key = polygon.api_key.get_secret_value() if polygon.api_key else ""
        return cls(str(polygon.rest_url), key, rate_per_s=polygon.rest_rate_per_s, **kw)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> PolygonRestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --------------------------------------------------------------- plumbing
    def _with_key(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        p = dict(params or {})
        if self._auth == "query":
            p["apiKey"] = self._key
        return p

    async def get_json(self, url: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """GET ``url`` (absolute, or a path under base_url) with retries; return the JSON body."""
        if not url.startswith(("http://", "https://")):
            url = self.base_url + url
        attempt = 0
        while True:
            await self.limiter.acquire()
            self.requests += 1
            try:
                # Merge into the URL's own query: a next_url keeps its cursor, the key is re-added.
                resp = await self._http.get(
                    httpx.URL(url).copy_merge_params(self._with_key(params) or {})
                )
            except httpx.TransportError as err:
                status, detail, retry_after = 0, repr(err), None
            else:
                if resp.status_code == 200:
                    body: dict[str, Any] = orjson.loads(resp.content)
                    return body
                status, detail = resp.status_code, resp.text[:200]
                if status in (401, 403):
                    raise PolygonAuthError(
                        f"Polygon REST refused the API key (HTTP {status}): {detail}"
                    )
                if status not in RETRY_STATUSES:
                    raise PolygonRestError(
                        f"GET {resp.request.url.path} -> HTTP {status}: {detail}", status
                    )
                retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
            if attempt >= self.max_retries:
                raise PolygonRestError(
                    f"GET {url.split('?')[0]} failed after {attempt + 1} tries: {status} {detail}",
                    status,
                )
            delay = (
                retry_after
                if retry_after is not None
                else backoff_delay(attempt, self.backoff_base, self.backoff_cap, self._rng)
            )
            log.warning(
                "polygon_rest_retry", status=status, attempt=attempt + 1, delay_s=round(delay, 3)
            )
            self.retries += 1
            attempt += 1
            await asyncio.sleep(delay)

    def on_base(self, url: str) -> str:
        """``url``'s path and query on the configured base URL (how ``next_url`` is followed)."""
        parts = urlsplit(url)
        return self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")

    def _checked(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        status = str(body.get("status", "OK"))
        if status == "ERROR":
            detail = body.get("error") or body.get("message") or "no message"
            raise PolygonRestError(f"GET {path} -> status ERROR: {detail}", 200)
        if status == "DELAYED":
            if not self.delayed_pages:
                log.warning("polygon_rest_delayed", path=path, request_id=body.get("request_id"))
            self.delayed_pages += 1
        return body

    async def paginate(
        self, path: str, params: Mapping[str, Any] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield each page, following ``next_url`` on the base URL (key re-added) until it is
        absent. A page whose status is ``ERROR`` raises :class:`PolygonRestError`."""
        body = self._checked(path, await self.get_json(path, params))
        yield body
        while body.get("next_url"):
            body = self._checked(path, await self.get_json(self.on_base(str(body["next_url"]))))
            yield body

    # --------------------------------------------------------------- endpoints
    async def trades(
        self,
        symbol: str,
        *,
        gte_ns: int | None = None,
        lt_ns: int | None = None,
        lte_ns: int | None = None,
        limit: int = 50_000,
        order: Literal["asc", "desc"] = "asc",
    ) -> AsyncIterator[Page]:
        """``/v3/trades/{symbol}`` results, one :class:`Page` per page, timestamps in ns."""
        params: dict[str, Any] = {"order": order, "sort": "timestamp", "limit": limit}
        if gte_ns is not None:
            params["timestamp.gte"] = gte_ns
        if lt_ns is not None:
            params["timestamp.lt"] = lt_ns
        if lte_ns is not None:
            params["timestamp.lte"] = lte_ns
        async for page in self.paginate(f"/v3/trades/{symbol}", params):
            yield Page.from_body(page)

    async def aggs(
        self,
        symbol: str,
        multiplier: int,
        timespan: str,
        start: str | int,
        end: str | int,
        *,
        adjusted: bool = True,
        limit: int = 50_000,
    ) -> AsyncIterator[Page]:
        """``/v2/aggs/ticker/{T}/range/{m}/{timespan}/{from}/{to}`` results (``t``: start, ms)."""
        path = f"/v2/aggs/ticker/{symbol}/range/{multiplier}/{timespan}/{start}/{end}"
        params = {"adjusted": str(adjusted).lower(), "sort": "asc", "limit": limit}
        async for page in self.paginate(path, params):
            yield Page.from_body(page)

    async def last_trade(self, symbol: str) -> dict[str, Any] | None:
        """``/v2/last/trade/{symbol}`` as a ``/v3/trades`` result (long field names, ns), so
        :func:`signalstack.marketdata.wire.rest_trade_to_event` reads it; None if there is none."""
        path = f"/v2/last/trade/{symbol}"
        try:
            body = self._checked(path, await self.get_json(path))
        except PolygonRestError as err:
            if err.status == 404:
                return None
            raise
        res = body.get("results")
        if not isinstance(res, Mapping):
            return None
        return {str(LAST_TRADE_FIELDS.get(str(k)) or k): v for k, v in res.items()}

    async def conditions(self) -> ConditionTable:
        """The trade-condition table from ``/v3/reference/conditions`` (all pages)."""
        results: list[dict[str, Any]] = []
        params = {"asset_class": "stocks", "data_type": "trade", "limit": 1000}
        async for page in self.paginate("/v3/reference/conditions", params):
            results.extend(page.get("results") or [])
        return ConditionTable.from_response({"results": results}, source="rest")


async def load_conditions(client: PolygonRestClient | None) -> ConditionTable:
    """The live table when a client is given and answers, else the bundled copy (logged)."""
    if client is not None:
        try:
            return await client.conditions()
        except (PolygonRestError, PolygonAuthError, ValueError) as err:
            log.warning("conditions_fallback_bundled", error=str(err))
    return load_bundled_conditions()
