"""Training data sources behind one interface: the store, the simulator and yfinance.

The yfinance source runs the real yfinance code offline: a ``requests.Session`` with a transport
adapter answers Yahoo's chart endpoint from recorded responses (tests/fixtures/marketdata/
``yahoo_days_{SYMBOL}_1m.json``: three sessions of 1m bars per symbol), serving the slice
``[period1, period2)`` yfinance asks for, as Yahoo does. Nothing inside yfinance is mocked.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import duckdb
import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
import requests
from requests.adapters import BaseAdapter
from tests.unit.backfill.yahoo_replay import forget_yfinance_state, slice_chart

from signalstack.features.bar_features import BAR_FEATURE_COLUMNS, bar_features
from signalstack.features.columns import FEATURE_COLUMNS
from signalstack.features.sessions import session_index
from signalstack.marketdata.errors import HistoryLimitError
from signalstack.marketdata.yfinance_source import YFinanceSource
from signalstack.store.duckdb import DuckDBStore
from signalstack.training.frames import LABEL_COLUMNS, LabelSpec, SimulatedData, training_frame
from signalstack.training.labels import direction_labels, regime_labels
from signalstack.training.sources import (
    SimulatorSource,
    StoreSource,
    TrainingSource,
    YFinanceTrainingSource,
    make_source,
)

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "marketdata"
SYMBOLS = ("AAPL", "MSFT")
FIRST_OPEN = pd.Timestamp("2025-11-18 14:30", tz="UTC")
LAST_CLOSE = pd.Timestamp("2025-11-20 21:00", tz="UTC")
END = LAST_CLOSE + pd.Timedelta(minutes=1)  # exclusive: the bar ending at the close is in
NOW = dt.datetime(2025, 11, 21, 12, 0, tzinfo=dt.UTC)
SimFactory = Callable[..., SimulatedData]


class YahooDaysReplay(BaseAdapter):
    """Answers ``/v8/finance/chart/{T}`` from ``yahoo_days_{T}_1m.json``, sliced to the
    requested ``[period1, period2)``; records the chart requests it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: list[tuple[str, dict[str, list[str]]]] = []

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
            self.charts.append((sym, q))
            path = FIX / f"yahoo_days_{sym}_1m.json"
            if path.exists():  # a range request (yfinance's time-zone lookup): the last day
                body = json.loads(path.read_bytes())
                last = body["chart"]["result"][0]["meta"]["tradingPeriods"][-1][0]
                q.setdefault("period1", [str(last["start"])])
                q.setdefault("period2", [str(last["end"])])
                resp.status_code, resp._content = 200, json.dumps(slice_chart(body, q)).encode()
        return resp

    def close(self) -> None:
        pass


Yahoo = tuple[YFinanceTrainingSource, YahooDaysReplay]


@pytest.fixture
def yahoo(tmp_path: Path) -> Iterator[Yahoo]:
    import yfinance as yf

    yf.set_tz_cache_location(str(tmp_path / "yf-cache"))
    forget_yfinance_state()
    adapter = YahooDaysReplay()
    s = requests.Session()
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    yield YFinanceTrainingSource(YFinanceSource(session=s), now=NOW), adapter
    s.close()
    forget_yfinance_state()


def _session_close(ts: pd.Series) -> npt.NDArray[np.int64]:
    ends = session_index().ends
    t = ts.astype("int64").to_numpy() - 1
    out: npt.NDArray[np.int64] = ends[np.searchsorted(ends, t)]
    return out


# ---- yfinance ----------------------------------------------------------------------------------
def test_yfinance_frames_are_feature_set_2_with_labels_never_across_the_close(yahoo: Yahoo) -> None:
    src, adapter = yahoo
    out = src.frame(SYMBOLS, FIRST_OPEN, END)
    assert list(out.columns) == [
        "symbol", "ts", *BAR_FEATURE_COLUMNS, "feature_set_version", "session", *LABEL_COLUMNS
    ]  # fmt: skip
    assert set(out["feature_set_version"]) == {2}
    assert not set(FEATURE_COLUMNS) - set(BAR_FEATURE_COLUMNS) & set(out.columns)
    # every recorded bar (3 sessions × 390 minutes, one null minute a day dropped), in order
    assert out.groupby("symbol").size().to_dict() == {"AAPL": 1167, "MSFT": 1167}
    assert out.equals(out.sort_values(["symbol", "ts"]).reset_index(drop=True))
    assert out.groupby("symbol")["session"].nunique().eq(3).all()
    assert out["direction"].notna().mean() > 0.9 and out["regime"].notna().mean() > 0.8
    close = _session_close(out["ts"])
    for label, end in (("direction", "direction_end"), ("regime", "regime_end")):
        known = out[label].notna().to_numpy()
        crossing = out[end].astype("int64").to_numpy() > close
        assert crossing.any() and not known[crossing].any()
        assert (out[end].astype("int64").to_numpy()[known] <= close[known]).all()
    # yfinance really asked Yahoo's chart endpoint, 1m bars, per symbol
    assert {s for s, q in adapter.charts if q.get("interval") == ["1m"]} == set(SYMBOLS)


def test_yfinance_labels_are_the_shared_label_functions_on_the_bars(yahoo: Yahoo) -> None:
    src, _ = yahoo
    out = src.frame(SYMBOLS, FIRST_OPEN, END)
    bars = src.client.bars_many(SYMBOLS, FIRST_OPEN, END, "1m", now=NOW)
    feats = bar_features(bars, session_index())
    pd.testing.assert_frame_equal(out[list(feats.columns)], feats)
    spec = LabelSpec()
    d = direction_labels(bars, spec.direction, decisions=feats)
    r = regime_labels(bars, spec.regime, decisions=feats)
    assert out["direction"].equals(d["direction"]) and out["regime"].equals(r["regime"])
    np.testing.assert_array_equal(out["fwd_return"], d["fwd_return"])


def test_yfinance_rows_do_not_depend_on_the_requested_start_or_later_bars(yahoo: Yahoo) -> None:
    src, _ = yahoo
    full = src.frame(SYMBOLS, FIRST_OPEN, END)
    start = pd.Timestamp("2025-11-19 16:00", tz="UTC")  # mid-session: 90 minutes after the open
    cut = pd.Timestamp("2025-11-19 18:00", tz="UTC")
    part = src.frame(SYMBOLS, start, END, as_of=cut)
    assert part["ts"].min() == start and part["ts"].max() == cut
    same = full[(full["ts"] >= start) & (full["ts"] <= cut)].reset_index(drop=True)
    # features: the session is read from its open, whatever the start; nothing after the cut
    cols = ["symbol", "ts", *BAR_FEATURE_COLUMNS, "session"]
    pd.testing.assert_frame_equal(part[cols], same[cols])
    assert same["realized_vol_15m"].notna().all()  # 90 minutes into the session: defined
    # labels: resolved by the cut-off → as in the full frame; else missing
    for label, end in (("direction", "direction_end"), ("regime", "regime_end")):
        resolved = (same[end] <= cut).to_numpy()
        assert resolved.any() and not resolved.all()
        assert part[label][resolved].equals(same[label][resolved])
        assert part[label][~resolved].isna().all()


def test_yfinance_refuses_what_yahoo_would_refuse(yahoo: Yahoo) -> None:
    src, _ = yahoo
    with pytest.raises(HistoryLimitError):
        src.frame(SYMBOLS, FIRST_OPEN - pd.Timedelta(days=40), FIRST_OPEN)
    with pytest.raises(ValueError, match="1-minute"):
        YFinanceTrainingSource(src.client, interval="5m")
    with pytest.raises(ValueError, match="needs symbols"):
        src.frame([], FIRST_OPEN, END)
    # a cut-off before the range: nothing to read, an empty frame of the same shape
    empty = src.frame(SYMBOLS, FIRST_OPEN, END, as_of=FIRST_OPEN - pd.Timedelta(days=1))
    assert empty.empty and list(empty.columns) == list(src.frame(SYMBOLS, FIRST_OPEN, END).columns)


# ---- simulator ---------------------------------------------------------------------------------
def test_simulator_source_is_reproducible_per_seed_and_closes_its_store() -> None:
    kw: dict[str, Any] = {"days": 1, "symbols": ("AAA", "BBB"), "trades_per_day": 4_000}
    a, b, c = (
        SimulatorSource(seed=3, **kw),
        SimulatorSource(seed=3, **kw),
        SimulatorSource(seed=4, **kw),
    )
    fa, fb, fc = a.frame(), b.frame(), c.frame()
    pd.testing.assert_frame_equal(fa, fb)
    assert not fa[list(FEATURE_COLUMNS)].equals(fc[list(FEATURE_COLUMNS)])
    assert set(fa["feature_set_version"]) == {1}
    assert list(fa.columns)[-len(LABEL_COLUMNS) - 1 :] == ["session", *LABEL_COLUMNS]
    truth = a.truth()
    assert truth is not None and truth.symbols == ("AAA", "BBB") and len(truth.regimes)
    assert fa["ts"].min() > truth.start and fa["ts"].max() <= truth.end
    hour = truth.start + pd.Timedelta(hours=1)
    only = a.frame(["BBB"], truth.start, hour)
    want = fa[(fa["symbol"] == "BBB") & (fa["ts"] < hour)].reset_index(drop=True)
    assert len(only) > 30
    pd.testing.assert_frame_equal(only, want)
    with pytest.raises(ValueError, match="not simulated: ZZZ"):
        a.frame(["ZZZ"])
    store = truth.store
    for s in (a, b, c):
        s.close()
    with pytest.raises(duckdb.ConnectionException, match="closed"):  # the private store
        store.bars(["AAA"], truth.start, truth.end)


def test_random_walk_has_a_single_regime_in_the_truth() -> None:
    kw: dict[str, Any] = {"days": 1, "symbols": ("AAA",), "trades_per_day": 3_000, "seed": 2}
    walk = SimulatorSource(random_walk=True, **kw)
    regimes = walk.truth().regimes
    assert set(regimes["regime"]) == {"calm"}
    assert regimes["regime"].nunique() < SimulatorSource(**kw).truth().regimes["regime"].nunique()
    walk.close()


def test_simulator_source_fills_a_given_store_and_leaves_it_open() -> None:
    store = DuckDBStore()
    store.migrate()
    src = SimulatorSource(days=1, symbols=("AAA",), trades_per_day=3_000, store=store)
    out = src.frame()
    src.close()
    assert store.count("features") == len(out) > 300  # still open, and it holds the data
    store.close()


# ---- store -------------------------------------------------------------------------------------
def test_store_source_is_training_frame(sim_store: SimFactory) -> None:
    sim = sim_store(days=1)
    src = StoreSource(sim.store)
    cut = sim.start + pd.Timedelta(hours=3)
    spec = LabelSpec()
    got = src.frame(sim.symbols, sim.start, sim.end, labels=spec, as_of=cut)
    want = training_frame(sim.store, sim.symbols, sim.start, sim.end, labels=spec, as_of=cut)
    pd.testing.assert_frame_equal(got, want)
    assert src.truth() is None and src.feature_set_version == 1
    with pytest.raises(ValueError, match="needs a start"):
        src.frame(sim.symbols, None, sim.end)


# ---- one interface -----------------------------------------------------------------------------
def test_make_source_builds_each_source_and_names_the_choices(yahoo: Yahoo) -> None:
    yf_src, _ = yahoo
    store = DuckDBStore()
    made: list[TrainingSource] = [
        make_source("store", store=store),
        make_source("simulator", days=1, symbols=("AAA",), trades_per_day=3_000),
        make_source("yfinance", client=yf_src.client, now=NOW),
    ]
    assert [s.name for s in made] == ["store", "simulator", "yfinance"]
    assert [s.feature_set_version for s in made] == [1, 1, 2]
    assert all(isinstance(s, TrainingSource) for s in made)
    # the same frame contract: the columns besides the features have the same dtypes
    shared = ["symbol", "ts", "feature_set_version", "session", *LABEL_COLUMNS]
    sim_frame, yf_frame = made[1].frame(None, None, None), made[2].frame(SYMBOLS, FIRST_OPEN, END)
    pd.testing.assert_series_equal(sim_frame[shared].dtypes, yf_frame[shared].dtypes)
    with pytest.raises(
        ValueError, match=r"unknown data source 'polygon'.*store, simulator, yfinance"
    ):
        make_source("polygon")  # type: ignore[arg-type]
    for s in made:
        s.close()
    store.close()
