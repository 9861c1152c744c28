"""One drift pass (``signalstack drift``): PSI of each model's inputs over a recent window.

For each model (``DRIFT_MODELS``; its reference from the champion bundle, see
:mod:`signalstack.drift.references`):

1. the window: the feature rows of ``MARKET_SYMBOLS`` with ``window_start < ts <= window_end``,
   ``window_end`` the pass's time floored to the minute, ``window_start`` ``DRIFT_WINDOW_MINUTES``
   earlier, read point in time (nothing stamped after ``window_end``) and only rows of the
   bundle's ``feature_set_version``;
2. the model inputs of those rows (``input_spec(fsv).transform``, as in training) and the PSI of
   each against the bundle's reference (:func:`signalstack.drift.psi.psi`);
3. a model with fewer than ``DRIFT_MIN_ROWS`` rows is not judged (``no_data``): the PSI of a
   handful of rows is noise (its expected value under no drift is about (buckets − 1) / rows).

Results go to the store's ``drift`` table — one row per model input, ``feature`` =
``<model>/<input>`` (the table's key has no model column, and two models share input names),
``reference`` = ``<model> v<version> run <run_id>`` (``local`` for a directory's bundle) —
upserted on (feature, feature_set_version, window_start, window_end), so a re-run for the same
time replaces its rows. Then the gauges (:mod:`signalstack.drift.metrics`).

A model is **drifted** when any input's PSI is at least ``DRIFT_ALERT_PSI`` (0.25); from
``DRIFT_WARN_PSI`` (0.1) it is reported as ``warn`` only. When a model drifted, the pass asks
the retrainer (:mod:`signalstack.drift.retrain`) to retrain the drifted models, once.

Exit status of the command: 0 no model drifted (stable, warn, or nothing to judge);
:data:`EXIT_DRIFT` (7) a model drifted (whatever the retrainer did, which the output says);
1 the retraining could not be requested; 2 a bad configuration or bundle.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import pandas as pd

from signalstack.drift.psi import psi
from signalstack.drift.references import LOCAL, MonitoredModel
from signalstack.inference.inputs import input_spec
from signalstack.logs import get_logger
from signalstack.store.base import TimeLike, to_utc

if TYPE_CHECKING:
    from signalstack.config import Settings
    from signalstack.drift.metrics import DriftMetrics
    from signalstack.drift.retrain import Retrainer, RetrainOutcome
    from signalstack.store.base import Store

log = get_logger(__name__)

EXIT_DRIFT: Final = 7
Status = Literal["stable", "warn", "alert", "no_data"]
Outcome = Literal["stable", "warn", "alert", "no_data", "no_models"]


def level(value: float, warn: float, alert: float) -> Status:
    if value >= alert:
        return "alert"
    return "warn" if value >= warn else "stable"


@dataclass(frozen=True)
class ModelDrift:
    """One model's result over the window."""

    model: str
    version: str
    reference: str
    feature_set_version: int
    rows: int
    psi: dict[str, float]  # input → PSI (empty when not judged)
    status: Status
    drifted_inputs: tuple[str, ...] = ()  # PSI >= the alert level

    @property
    def max_psi(self) -> float:
        return max(self.psi.values(), default=0.0)


@dataclass(frozen=True)
class DriftReport:
    window_start: pd.Timestamp
    window_end: pd.Timestamp
    warn_psi: float
    alert_psi: float
    models: tuple[ModelDrift, ...]
    skipped: dict[str, str] = field(default_factory=dict)  # model → why it was not checked
    retrain: RetrainOutcome | None = None

    @property
    def drifted(self) -> list[str]:
        return [m.model for m in self.models if m.status == "alert"]

    @property
    def outcome(self) -> Outcome:
        if not self.models:
            return "no_models"
        statuses = {m.status for m in self.models}
        for s in ("alert", "warn", "stable"):
            if s in statuses:
                return s
        return "no_data"

    @property
    def exit_code(self) -> int:
        return EXIT_DRIFT if self.drifted else 0

    def lines(self) -> list[str]:
        """A human summary, one line per model (what the command prints)."""
        out = [f"window {self.window_start.isoformat()} … {self.window_end.isoformat()}"]
        for m in self.models:
            if m.status == "no_data":
                out.append(f"{m.model} {_v(m.version)}: {m.rows} rows in the window, not judged")
                continue
            top = sorted(m.psi.items(), key=lambda kv: -kv[1])[:3]
            worst = ", ".join(f"{k} {v:.3f}" for k, v in top)
            out.append(f"{m.model} {_v(m.version)}: {m.status}, max PSI {m.max_psi:.3f} over "
                       f"{m.rows} rows ({worst})")  # fmt: skip
        out.extend(f"{name}: skipped, {why}" for name, why in self.skipped.items())
        if self.retrain is not None:
            out.append(f"retrain ({self.retrain.mode}): {self.retrain.action}: "
                       f"{self.retrain.detail}")  # fmt: skip
        return out


def _v(version: str) -> str:
    return version if version == LOCAL else f"v{version}"


def window(now: TimeLike, minutes: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(start, end) of the window ending at ``now`` floored to the minute."""
    end = to_utc(now).floor("min")
    return end - pd.Timedelta(minutes=minutes), end


def check_model(
    store: Store,
    model: MonitoredModel,
    symbols: Sequence[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    warn_psi: float,
    alert_psi: float,
    min_rows: int,
) -> ModelDrift:
    """PSI of the model's inputs over the window's feature rows (see the module docstring)."""
    tick = pd.Timedelta(1, "us")  # the stores keep microseconds
    rows = store.training_frame(
        list(symbols), start + tick, end + tick, as_of=end,
        feature_set_version=model.feature_set_version,
    )  # fmt: skip
    common = {
        "model": model.name,
        "version": model.version,
        "reference": model.label,
        "feature_set_version": model.feature_set_version,
        "rows": len(rows),
    }
    if len(rows) < min_rows:
        return ModelDrift(**common, psi={}, status="no_data")  # type: ignore[arg-type]
    x = input_spec(model.feature_set_version).transform(rows)
    values = psi(model.reference, x)
    drifted = tuple(k for k, v in values.items() if v >= alert_psi)
    status = level(max(values.values()), warn_psi, alert_psi)
    return ModelDrift(**common, psi=values, status=status, drifted_inputs=drifted)  # type: ignore[arg-type]


def drift_frame(report: DriftReport) -> pd.DataFrame:
    """The rows of the ``drift`` table for the judged models (see the module docstring)."""
    rows = [
        {
            "feature": f"{m.model}/{name}",
            "window_start": report.window_start,
            "window_end": report.window_end,
            "psi": value,
            "reference": m.reference,
            "feature_set_version": m.feature_set_version,
        }
        for m in report.models
        for name, value in m.psi.items()
    ]
    return pd.DataFrame(rows, columns=["feature", "window_start", "window_end", "psi",
                                       "reference", "feature_set_version"])  # fmt: skip


def run_pass(
    store: Store,
    models: Sequence[MonitoredModel],
    *,
    symbols: Sequence[str],
    now: TimeLike,
    window_minutes: int,
    warn_psi: float,
    alert_psi: float,
    min_rows: int,
    retrainer: Retrainer | None = None,
    metrics: DriftMetrics | None = None,
    skipped: dict[str, str] | None = None,
) -> DriftReport:
    """One pass: PSI per model, rows to the store, a retraining when a model drifted, gauges.
    The drift rows are written before the retrainer is asked, so a failed request loses none."""
    start, end = window(now, window_minutes)
    results = tuple(
        check_model(store, m, symbols, start, end, warn_psi=warn_psi, alert_psi=alert_psi,
                    min_rows=min_rows)
        for m in models
    )  # fmt: skip
    report = DriftReport(start, end, warn_psi, alert_psi, results, dict(skipped or {}))
    frame = drift_frame(report)
    if len(frame):
        store.write_drift(frame)
    for m in results:
        log.info("drift_model", model=m.model, version=m.version, status=m.status, rows=m.rows,
                 max_psi=round(m.max_psi, 4), drifted_inputs=list(m.drifted_inputs))  # fmt: skip
    if report.drifted and retrainer is not None:
        worst = max(m.max_psi for m in results if m.status == "alert")
        try:
            outcome = retrainer.request(report.drifted, worst, to_utc(now))
        except Exception:
            if metrics is not None:
                metrics.observe(report)
                metrics.retrains.labels(retrainer.mode, "error").inc()
            raise
        report = DriftReport(start, end, warn_psi, alert_psi, results, report.skipped, outcome)
    if metrics is not None:
        metrics.observe(report)
    return report


def load_models(settings: Settings, work: Path) -> tuple[list[MonitoredModel], dict[str, str]]:
    """The models to check: DRIFT_MODEL_DIR when set, else the MLflow alias."""
    from signalstack.drift import references

    cfg = settings.drift
    if cfg.model_dir is not None:
        return references.from_directory(cfg.model_dir, cfg.models)
    return references.from_registry(
        settings.mlflow.tracking_uri,
        settings.mlflow.model_alias,
        settings.mlflow.model_prefix,
        cfg.models,
        work,
    )


def open_store_retrying(settings: Settings) -> Store:
    """The store, retried with backoff while the database is unreachable."""
    from signalstack.drift.retrain import retry
    from signalstack.store import open_store
    from signalstack.store.base import StoreError

    cfg = settings.drift
    return retry(
        lambda: open_store(settings),
        what="open the store",
        attempts=cfg.api_attempts,
        base_s=cfg.backoff_base_s,
        cap_s=cfg.backoff_cap_s,
        transient=lambda e: isinstance(e, StoreError | OSError),
    )


def run(
    settings: Settings,
    *,
    now: TimeLike | None = None,
    metrics: DriftMetrics | None = None,
    retrainer: Retrainer | None = None,
) -> DriftReport:
    """The command: load the references, open the store, one pass, push the gauges."""
    from signalstack.drift.metrics import DriftMetrics
    from signalstack.drift.retrain import make_retrainer

    cfg = settings.drift
    metrics = metrics if metrics is not None else DriftMetrics()
    when = to_utc(now if now is not None else pd.Timestamp.now(tz="UTC"))
    try:
        with tempfile.TemporaryDirectory(prefix="signalstack-drift-") as tmp:
            models, skipped = load_models(settings, Path(tmp))
        for name, why in skipped.items():
            log.warning("drift_model_skipped", model=name, reason=why)
        store = open_store_retrying(settings)
        try:
            report = run_pass(
                store, models, symbols=settings.market.symbols, now=when,
                window_minutes=cfg.window_minutes, warn_psi=cfg.warn_psi,
                alert_psi=cfg.alert_psi, min_rows=cfg.min_rows,
                retrainer=retrainer if retrainer is not None else make_retrainer(cfg, store),
                metrics=metrics, skipped=skipped,
            )  # fmt: skip
        finally:
            store.close()
    except Exception:
        metrics.failed()
        metrics.push(cfg.pushgateway_url)
        raise
    metrics.succeeded()
    metrics.push(cfg.pushgateway_url)
    return report


__all__ = [
    "EXIT_DRIFT",
    "DriftReport",
    "ModelDrift",
    "check_model",
    "drift_frame",
    "level",
    "load_models",
    "run",
    "run_pass",
    "window",
]
