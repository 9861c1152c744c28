"""Every Prometheus metric the code defines, collected from its registries: the module-level
ones (the default registry, filled on import), the per-instance sets (a class taking a
``registry``) and the batch jobs' registries (backfill). ``MODULES`` names each module that
defines metrics; a test checks that no other module does, so a new one is walked too."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import Metric

#: modules that define metrics, and how their registries are made
MODULES = (
    "signalstack.ingest.metrics",
    "signalstack.sink.metrics",
    "signalstack.engines.metrics",
    "signalstack.backfill.metrics",
    "signalstack.drift.metrics",
    "signalstack.serving.metrics",
)
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}


@dataclass(frozen=True)
class MetricDef:
    name: str  # the family name (a counter's without _total)
    kind: str
    documentation: str
    labels: frozenset[str]
    origin: str

    @property
    def series_names(self) -> tuple[str, ...]:
        return tuple(self.name + s for s in _SUFFIXES[self.kind])


def _labels(metric: Metric, collector: object) -> frozenset[str]:
    names = set(getattr(collector, "_labelnames", ()) or ())
    for s in metric.samples:
        names.update(k for k in s.labels if k not in ("le", "quantile"))
    return frozenset(names)


def _walk(registry: CollectorRegistry, origin: str) -> Iterator[MetricDef]:
    collectors = set(registry._collector_to_names)  # private: the label names need them
    for collector in collectors:
        for metric in collector.collect():
            if not metric.name.startswith("signalstack_"):
                continue  # process_*, python_*: prometheus_client's own collectors
            yield MetricDef(
                metric.name, metric.type, metric.documentation, _labels(metric, collector), origin
            )


def _backfill_registry() -> CollectorRegistry:
    from signalstack.backfill.metrics import registry_for
    from signalstack.backfill.run import BackfillResult, BackfillStats

    return registry_for(BackfillResult("r", "ok", BackfillStats()), now=0.0)


def all_metrics() -> list[MetricDef]:
    for name in MODULES:
        importlib.import_module(name)
    from signalstack.ingest.metrics import IngestMetrics
    from signalstack.serving.metrics import ServingMetrics

    found: dict[str, MetricDef] = {}
    sources = [
        (REGISTRY, "default registry (sink, engines)"),
        (IngestMetrics(CollectorRegistry()).registry, "IngestMetrics"),
        (ServingMetrics(CollectorRegistry()).registry, "ServingMetrics"),
        (_drift_registry(), "DriftMetrics"),
        (_backfill_registry(), "backfill registry_for"),
    ]
    for registry, origin in sources:
        for m in _walk(registry, origin):
            found.setdefault(m.name, m)
    return sorted(found.values(), key=lambda m: m.name)


def _drift_registry() -> CollectorRegistry:
    """A drift pass's registry after a success (``last_success`` is registered only then)."""
    from signalstack.drift.metrics import DriftMetrics

    metrics = DriftMetrics(CollectorRegistry())
    metrics.succeeded(now=0.0)
    return metrics.registry


def exported_series_names() -> set[str]:
    return {s for m in all_metrics() for s in m.series_names}
