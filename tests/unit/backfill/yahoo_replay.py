"""Yahoo's chart endpoint answered from the recorded frames (tests/fixtures/marketdata/
``yahoo_days_{SYMBOL}_1m.json``), sliced to the ``[period1, period2)`` yfinance asks for: the
real yfinance code runs, only its network is replaced. ``rate_limited`` first answers 429."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import BaseAdapter

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "marketdata"


class YahooReplay(BaseAdapter):
    def __init__(self, rate_limited: int = 0) -> None:
        super().__init__()
        self.charts = 0
        self.rate_limited = rate_limited

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        assert request.url is not None
        url = urlsplit(request.url)
        q = parse_qs(url.query)
        resp = requests.Response()
        resp.url, resp.request = request.url, request
        resp.headers["Content-Type"] = "application/json"
        resp.status_code, resp._content = 404, b""
        if url.path.endswith("/getcrumb"):
            resp.status_code, resp._content = 200, b"replayCrumb"
        elif "/v8/finance/chart/" in url.path:
            sym = url.path.rsplit("/", 1)[1]
            path = FIX / f"yahoo_days_{sym}_1m.json"
            if "period1" in q and self.rate_limited > 0:
                self.rate_limited -= 1
                resp.status_code, resp._content = 429, b"Too Many Requests"
                return resp
            if "period1" in q:
                self.charts += 1
            if path.exists():
                body = json.loads(path.read_bytes())
                last = body["chart"]["result"][0]["meta"]["tradingPeriods"][-1][0]
                q.setdefault("period1", [str(last["start"])])
                q.setdefault("period2", [str(last["end"])])
                resp.status_code, resp._content = 200, json.dumps(slice_chart(body, q)).encode()
        return resp

    def close(self) -> None:
        pass


def slice_chart(body: dict[str, Any], q: dict[str, list[str]]) -> dict[str, Any]:
    """The recorded chart cut to the ``[period1, period2)`` of the query ``q``."""
    lo, hi = int(q["period1"][0]), int(q["period2"][0])
    res = body["chart"]["result"][0]
    ts = res["timestamp"]
    keep = [i for i, t in enumerate(ts) if lo <= t < hi]
    res["timestamp"] = [ts[i] for i in keep]
    quote = res["indicators"]["quote"][0]
    for k in quote:
        quote[k] = [quote[k][i] for i in keep]
    res["meta"]["tradingPeriods"] = [
        p for p in res["meta"]["tradingPeriods"] if p[0]["end"] > lo and p[0]["start"] < hi
    ]
    return body


def forget_yfinance_state() -> None:
    """yfinance keeps one process-wide data singleton (session, cookie, crumb) across calls: an
    earlier test's replay session would answer the next test's requests. Start afresh."""
    from yfinance.data import YfData

    type(YfData)._instances.pop(YfData, None)
