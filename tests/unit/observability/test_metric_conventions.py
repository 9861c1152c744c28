"""Every metric the code defines follows Prometheus practice: ``signalstack_<component>_…``
snake case with help text; base units in the name (``_seconds``, ``_bytes``; a point in time
is ``_timestamp_seconds``; counters end in ``_total``, nothing else does); bounded label
sets (each label name below says why its values are bounded; never a symbol or an id)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from tests.unit.observability.metric_catalog import MODULES, MetricDef, all_metrics

PACKAGE = Path(__file__).resolve().parents[3] / "services" / "signalstack"
NAME = re.compile(
    r"^signalstack_(ingest|sink|stream|serving|drift|backfill)_[a-z][a-z0-9_]*[a-z0-9]$"
)
#: label name → why its values are bounded
BOUNDED_LABELS = {
    "source": "trade sources (polygon_ws, polygon_rest, yfinance, sim)",
    "reason": "the RejectReason enum and the store's constraint classes",
    "path": "the ingest's two parse paths (fast, general)",
    "ev": "Polygon event types the ingest ignores (Q, A, AM)",
    "table": "the store's tables",
    "topic": "the configured topics",
    "engine": "local, spark",
    "query": "the Spark job's queries (features, dlq), or local (the local engine's consumer)",
    "outcome": "fixed outcome names per metric",
    "route": "route templates of the app, never the raw path",
    "model": "regime, direction, anomaly",
    "status": "HTTP status codes",
    "label": "predicted classes of the three models",
    "version": "model versions loaded now (the old one's series is removed on a swap)",
    "kind": "model kinds",
    "feature_set_version": "feature set versions",
    "input": "model inputs (the feature columns)",
    "mode": "drift retraining modes",
    "action": "drift retraining actions",
    "stage": "the live-prediction stages (feed, predict, store, kafka)",
}
FORBIDDEN_UNITS = re.compile(
    r"_(ms|msec|millis|milliseconds|us|micros|microseconds|ns|nanos|nanoseconds|minutes|hours|"
    r"days|kb|mb|gb|kilobytes|megabytes|percent)(_|$)"
)
TIME_WORDS = re.compile(r"(latency|duration|_age|delay|elapsed|uptime|_time(_|$)|timestamp)")
SIZE_WORDS = re.compile(r"(memory|_size(_|$))")

METRICS = all_metrics()


def test_every_module_defining_metrics_is_walked() -> None:
    """A module that creates prometheus_client metrics is in metric_catalog.MODULES."""
    kinds = {"Counter", "Gauge", "Histogram", "Summary", "Info", "Enum"}
    defining = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {
            a.asname or a.name
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module == "prometheus_client"
            for a in n.names
            if a.name in kinds
        }
        if imported:
            rel = path.relative_to(PACKAGE.parent).with_suffix("").as_posix()
            defining.add(rel.replace("/", "."))
    assert defining <= set(MODULES), defining - set(MODULES)


def test_the_walk_finds_every_component() -> None:
    prefixes = {m.name.split("_")[1] for m in METRICS}
    assert prefixes == {"ingest", "sink", "stream", "serving", "drift", "backfill"}
    assert len(METRICS) > 60


@pytest.mark.parametrize("m", METRICS, ids=lambda m: m.name)
def test_metric_follows_the_conventions(m: MetricDef) -> None:
    assert NAME.match(m.name), f"{m.name}: not signalstack_<component>_<snake_case>"
    assert m.documentation.strip(), f"{m.name}: no help text"
    assert not FORBIDDEN_UNITS.search(m.name), f"{m.name}: use base units (_seconds, _bytes)"
    if m.kind != "counter":
        assert not m.name.endswith("_total"), f"{m.name}: only counters end in _total"
    if TIME_WORDS.search(m.name):
        assert (
            m.name.endswith("_seconds")
            or m.name.endswith("_seconds_total")
            or (m.kind == "counter" and "_seconds" in m.name)
        ), f"{m.name}: a time is in seconds (_seconds)"
    if "timestamp" in m.name or re.search(r"since the epoch|unix time", m.documentation, re.I):
        assert m.name.endswith("_timestamp_seconds"), f"{m.name}: a point in time"
    if SIZE_WORDS.search(m.name):
        assert m.name.endswith("_bytes"), f"{m.name}: a size is in bytes (_bytes)"
    if m.kind == "histogram":
        assert re.search(r"_(seconds|bytes|messages|score)$", m.name), (
            f"{m.name}: a histogram's unit belongs in its name"
        )
    unbounded = m.labels - BOUNDED_LABELS.keys()
    assert not unbounded, f"{m.name}: labels {sorted(unbounded)} are not known to be bounded"
