"""The Grafana dashboards: the checked-in JSON is what grafana/ generates (a test that fails
when it is stale: run `make dashboards`), every datasource is referenced through the uid
variables, times are shown in America/New_York, and every panel the issue asks for is there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana import queries as q
from grafana.dashboards import all_queries, panels, rendered

ROOT = Path(__file__).resolve().parents[3]
OUT = ROOT / "charts/signalstack/charts/monitoring/files/dashboards"
PROVISIONING = ROOT / "grafana/provisioning"
DS_VARS = {"${ds_timescale}", "${ds_prometheus}"}


def _docs() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))}


def test_checked_in_json_is_what_the_source_generates() -> None:
    want = rendered()
    have = {p.name: p.read_text() for p in OUT.glob("*.json")}
    assert sorted(have) == sorted(want), "dashboards added or removed: run `make dashboards`"
    stale = [name for name in want if have[name] != want[name]]
    assert not stale, f"stale dashboard JSON {stale}: run `make dashboards`"


@pytest.mark.parametrize("name", sorted(rendered()))
def test_datasources_by_variable_and_new_york_time(name: str) -> None:
    doc = json.loads(rendered()[name])
    assert doc["timezone"] == "America/New_York"
    names = {v["name"]: v for v in doc["templating"]["list"]}
    assert names["ds_timescale"]["type"] == names["ds_prometheus"]["type"] == "datasource"
    for p in panels(doc):
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] in DS_VARS, p["title"]
        for t in p["targets"]:
            ds = t.get("datasource") or p["datasource"]
            assert ds["uid"] == p["datasource"]["uid"], p["title"]
            assert ("rawSql" in t) == (ds["uid"] == "${ds_timescale}"), p["title"]


def test_every_promised_panel_is_there() -> None:
    titles = [p.get("title", "") for doc in _docs().values() for p in panels(doc)]
    promised = [
        "Live trade feed",
        "Ticks per second",
        "OHLCV 1m with anomalies",
        "Features",
        "predicted vs realised",
        "PSI per feature",
        "Inference latency p50 / p99",
        "Inference rate",
        "Kafka consumer lag",
        "Sink write latency",
        "Backfill runs",
        "Backfill gaps",
        "Tick → row",
        "Bar end → prediction row",
        "Spark rows per second",
        "Spark batch duration and watermark delay",
        "Spark state rows",
    ]
    for words in promised:
        assert any(words in t for t in titles), f"no panel titled like {words!r}"


def test_every_query_of_the_source_is_on_a_panel() -> None:
    used = {id(query) for _, _, query in all_queries()}
    defined = [v for v in vars(q).values() if isinstance(v, q.SqlQuery | q.PromQuery)]
    assert [v for v in defined if id(v) not in used] == []


def test_provisioning_files() -> None:
    ds = yaml.safe_load((PROVISIONING / "datasources/signalstack.yaml").read_text())
    types = {d["type"] for d in ds["datasources"]}
    assert types == {"grafana-postgresql-datasource", "prometheus"}
    dash = yaml.safe_load((PROVISIONING / "dashboards/signalstack.yaml").read_text())
    assert dash["providers"][0]["type"] == "file"
