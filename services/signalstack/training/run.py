"""``signalstack train``: data source → walk-forward evaluation → bundles → MLflow → the gate.

One invocation is one MLflow parent run; each model gets a nested run with its parameters,
per-fold and aggregate metrics beside its baselines', the dataset (digest and range), plots,
the logged model (signature, input example; registered under its name) and the champion
decision. The gate compares the candidate (the last fold's model) with its baselines and with
the current champion scored on the **same holdout rows**; only a win by ``TRAIN_GATE_MARGIN``
moves the alias. Decisions are mirrored in the store (``model_registry``, ``model_decisions``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from signalstack.features.columns import FEATURE_SET_VERSION
from signalstack.inference.inputs import input_spec, sequences
from signalstack.training.evaluate import (
    CLASSES,
    Evaluation,
    ModelConfigs,
    Progress,
    evaluate,
    group_keys,
)
from signalstack.training.frames import LabelSpec
from signalstack.training.labels import anomaly_truth, utc_ns
from signalstack.training.models import KIND, MODELS, IForestConfig, XgbConfig
from signalstack.training.splits import SplitConfig

if TYPE_CHECKING:
    from signalstack.config import Settings
    from signalstack.store.base import Store
    from signalstack.training.registry import Decision
    from signalstack.training.sources import TrainingSource


@dataclass
class ModelOutcome:
    evaluation: Evaluation
    version: str | None = None
    decision: Decision | None = None
    champion_metrics: dict[str, float] = field(default_factory=dict)
    run_id: str = ""


@dataclass
class TrainResult:
    run_id: str
    experiment: str
    source: str
    feature_set_version: int
    rows: int
    start: str
    end: str
    digest: str
    models: dict[str, ModelOutcome]
    seconds: float

    @property
    def promoted(self) -> list[str]:
        return [n for n, m in self.models.items() if m.decision is not None and m.decision.promote]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "source": self.source,
            "feature_set_version": self.feature_set_version,
            "rows": self.rows,
            "range": [self.start, self.end],
            "dataset_digest": self.digest,
            "seconds_total": round(self.seconds, 2),
            "models": {},
        }
        for name, m in self.models.items():
            ev = m.evaluation
            out["models"][name] = {
                "kind": ev.kind,
                "seconds": round(ev.seconds, 2),
                "metric": ev.primary,
                "cv": ev.aggregate,
                "baselines_cv": ev.baseline_aggregate,
                "holdout": ev.holdout.metrics,
                "baselines_holdout": ev.holdout.baselines,
                "champion_holdout": m.champion_metrics,
                "version": m.version,
                "decision": m.decision.to_dict() if m.decision else None,
            }
        return out


def dataset_digest(frame: pd.DataFrame) -> str:
    """A content digest of the training frame (row order included): same data, same digest."""
    h = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def prepare_tracking(uri: str) -> str:
    """A local ``sqlite:///`` store starts from the devstack's pre-migrated template (MLflow's
    ~60 schema migrations cost tens of seconds on 2 cores); its artifacts live beside it."""
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.exists():
            from signalstack.devstack.mlflow import template_db

            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(template_db(), path)
    return uri


def _experiment(client: Any, name: str, uri: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    location = None
    if uri.startswith("sqlite:///"):  # no server to proxy artifacts: keep them beside the db
        location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return str(client.create_experiment(name, artifact_location=location))


def registered_name(prefix: str, name: str, feature_set_version: int) -> str:
    """The registered model of ``name`` trained on a feature set: ``<prefix><name>`` for the
    feature set the stream engines write (the one serving reads), ``<prefix><name>-fs<N>``
    for another (yfinance's bars-only set 2). Each feature set has its own champion, so a model
    of one set never competes with, replaces or blocks a model of the other."""
    base = f"{prefix}{name}"
    return base if feature_set_version == FEATURE_SET_VERSION else f"{base}-fs{feature_set_version}"


def model_configs(settings: Settings) -> ModelConfigs:
    s = settings.training
    lstm = None
    try:
        from signalstack.training.lstm import LstmConfig
    except ImportError:  # no torch (the inference image): the LSTM cannot be trained here
        pass
    else:
        lstm = LstmConfig(
            sequence_length=s.sequence_length,
            hidden_size=s.lstm_hidden_size,
            epochs=s.lstm_epochs,
            batch_size=s.lstm_batch_size,
            learning_rate=s.lstm_learning_rate,
            seed=s.seed,
        )
    return ModelConfigs(XgbConfig.from_settings(s), IForestConfig.from_settings(s), lstm, s.seed)


def train(
    settings: Settings,
    source: TrainingSource,
    symbols: Sequence[str],
    start: Any,
    end: Any,
    *,
    models: Sequence[str] = MODELS,
    experiment: str | None = None,
    tracking_uri: str | None = None,
    store: Store | None = None,
    progress: Progress | None = None,
    work_dir: Path | None = None,
) -> TrainResult:
    """Train, evaluate, log, register and gate ``models`` on ``source``'s frame."""
    import mlflow

    from signalstack.training.registry import ModelRegistry

    t0 = time.perf_counter()
    _quiet_mlflow()
    s = settings.training
    labels = LabelSpec.from_settings(s)
    from signalstack.features.sessions import session_index

    sessions = session_index(settings.market.calendar, settings.market.extended_hours)
    frame = source.frame(symbols, start, end, labels=labels, sessions=sessions)
    if frame.empty:
        raise ValueError(f"no feature rows for {', '.join(symbols)} in [{start}, {end})")
    versions = frame["feature_set_version"].unique()
    if len(versions) != 1:
        raise ValueError(f"the frame mixes feature sets {sorted(versions)}: train one at a time")
    fsv = int(versions[0])
    spec = input_spec(fsv)
    split = SplitConfig.from_settings(s, labels.horizon_minutes)
    configs = model_configs(settings)
    truth = _anomaly_truth(source, frame)
    x_in = spec.transform(frame)
    digest = dataset_digest(frame)
    lo, hi = frame["ts"].min().isoformat(), frame["ts"].max().isoformat()

    uri = prepare_tracking(tracking_uri or settings.mlflow.tracking_uri)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp_name = experiment or s.experiment
    exp_id = _experiment(client, exp_name, uri)
    registry = ModelRegistry(uri, alias=settings.mlflow.model_alias, store=store)
    work = Path(work_dir or tempfile.mkdtemp(prefix="signalstack-train-"))
    outcomes: dict[str, ModelOutcome] = {}
    common = {
        "data_source": source.name,
        "symbols": ",".join(symbols),
        "start": lo,
        "end": hi,
        "rows": len(frame),
        "feature_set_version": fsv,
        "dataset_digest": digest,
        "seed": s.seed,
        "n_splits": split.n_splits,
        "split_scheme": split.scheme,
        "embargo_minutes": split.embargo_ns / 60e9,
        "direction_horizon_minutes": labels.direction.horizon_minutes,
        "direction_band": labels.direction.band,
        "regime_horizon_minutes": labels.regime.horizon_minutes,
        "regime_vol_threshold": labels.regime.vol_threshold,
        "regime_trend_z": labels.regime.trend_z,
        "gate_margin": s.gate_margin,
    }
    if any(KIND[n] == "lstm" for n in models) and configs.lstm is None:
        raise RuntimeError("training the LSTM needs torch: install the train extra")
    try:
        with mlflow.start_run(experiment_id=exp_id, run_name=f"train-{source.name}") as parent:
            mlflow.log_params(common)
            mlflow.set_tags({"feature_set_version": str(fsv), "dataset_digest": digest})
            for name in models:
                with mlflow.start_run(experiment_id=exp_id, run_name=name, nested=True) as run:
                    outcomes[name] = _train_one(
                        name, frame, x_in, spec, split, configs, truth, progress, registry, work,
                        common, digest, fsv, source.name, s.gate_margin, run.info.run_id,
                        registered_name(settings.mlflow.model_prefix, name, fsv),
                        s.anomaly_quantile,
                    )  # fmt: skip
            parent_id = parent.info.run_id
            promoted = [n for n, o in outcomes.items() if o.decision and o.decision.promote]
            mlflow.set_tag("promoted", ",".join(promoted) or "none")
    finally:
        if work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return TrainResult(
        parent_id, exp_name, source.name, fsv, len(frame), lo, hi, digest, outcomes,
        time.perf_counter() - t0,
    )  # fmt: skip


def _quiet_mlflow() -> None:
    """MLflow's own INFO/WARNING chatter (cloudpickle, pip versions, registration notices) buries
    the progress display; the run's outcome is reported by us and logged in MLflow itself."""
    import logging
    import warnings

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"mlflow\..*")


def _anomaly_truth(source: TrainingSource, frame: pd.DataFrame) -> np.ndarray | None:
    sim = source.truth()
    if sim is None:
        return None
    t = anomaly_truth(frame[["symbol", "ts"]], sim.anomalies)
    return np.asarray(t["anomaly"].to_numpy(), dtype=bool)


def _train_one(
    name: str,
    frame: pd.DataFrame,
    x_in: np.ndarray,  # spec.transform(frame), computed once for every model
    spec: Any,
    split: SplitConfig,
    configs: ModelConfigs,
    truth: np.ndarray | None,
    progress: Progress | None,
    registry: Any,
    work: Path,
    common: dict[str, Any],
    digest: str,
    fsv: int,
    source_name: str,
    margin: float,
    run_id: str,
    registered: str,
    anomaly_quantile: float,
) -> ModelOutcome:
    import mlflow

    from signalstack.drift.psi import reference_distribution
    from signalstack.inference.bundle import BundleMeta
    from signalstack.training import export
    from signalstack.training.registry import Decision, decide

    ev = evaluate(
        name, frame, spec, split, configs, anomaly_truth=truth, progress=progress, inputs=x_in
    )
    out = ModelOutcome(ev, run_id=run_id)
    mlflow.log_params({"model": name, "kind": ev.kind, **_prefixed("fit", ev.fit_config)})
    from mlflow.data.pandas_dataset import from_pandas

    mlflow.log_input(
        from_pandas(frame, name=f"{source_name}-{digest}", digest=digest), context="training"
    )
    for f in ev.folds:
        mlflow.log_metrics(_clean(f.metrics, "fold."), step=f.index)
        for b, m in f.baselines.items():
            mlflow.log_metrics(_clean(m, f"fold.baseline.{b}."), step=f.index)
    mlflow.log_metrics(_clean(ev.aggregate, "cv."))
    for b, m in ev.baseline_aggregate.items():
        mlflow.log_metrics(_clean(m, f"cv.baseline.{b}."))
    hold = ev.holdout
    mlflow.log_metrics(_clean(hold.metrics, "holdout."))
    for b, m in hold.baselines.items():
        mlflow.log_metrics(_clean(m, f"holdout.baseline.{b}."))
    mlflow.log_metric("seconds", ev.seconds)
    _log_plots(name, ev, frame, spec, truth)

    # the candidate: the holdout fold's model, exported for serving
    train_rows = hold.train
    end_col = "ts" if name == "anomaly" else f"{name}_end"
    train_end = pd.Timestamp(int(utc_ns(frame[end_col])[train_rows].max()))  # naive UTC
    holdout_start = pd.Timestamp(int(utc_ns(frame["ts"])[hold.test].min()))
    meta = BundleMeta.for_model(
        name=name,
        kind=ev.kind,
        feature_set_version=fsv,
        scaler=hold.scaler,
        classes=CLASSES[name],
        sequence_length=configs.lstm.sequence_length if ev.kind == "lstm" else None,
        psi_reference=reference_distribution(x_in[hold.fit_rows], list(spec.input_names)).to_dict(),
        training={
            "run_id": run_id,
            "data_source": source_name,
            "range": [common["start"], common["end"]],
            "dataset_digest": digest,
            "train_rows": len(train_rows),
            # the newest instant the model's training labels read (UTC): a later holdout is
            # out of sample for it
            "train_end": train_end.isoformat() + "Z",
            "holdout_start": holdout_start.isoformat() + "Z",
            "holdout_rows": len(hold.test),
            "seed": common["seed"],
            "metric": ev.primary,
            "holdout": hold.metrics,
            "trained_at": dt.datetime.now(dt.UTC).isoformat(),
            **_threshold(ev, anomaly_quantile),
        },
    )
    bundle_dir = work / name
    scaled = hold.scaler.transform(x_in)
    check = hold.test[: min(len(hold.test), 512)]
    if ev.kind == "lstm":
        seq = sequences(
            scaled, group_keys(frame), meta.sequence_length or 1, pad=hold.scaler.missing_row()
        )
        export.export_lstm(hold.model, bundle_dir, meta, seq[check])
    elif ev.kind == "xgboost":
        export.export_xgboost(hold.model, bundle_dir, meta, scaled[check])
    else:
        export.export_iforest(hold.model, bundle_dir, meta, scaled[check])

    # the champion, scored on the same holdout rows
    decision: Decision
    champ_ref = registry.champion(registered)  # resolved once: the version scored is the one named
    champ_dir = (
        registry.download_bundle(registered, champ_ref.version, work / f"{name}-champion")
        if champ_ref is not None
        else None
    )
    champion_value: float | None = None
    champion_version = champ_ref.version if champ_ref else None
    candidate = float(hold.metrics.get(ev.primary, float("nan")))
    base_values = {b: float(m.get(ev.primary, float("nan"))) for b, m in hold.baselines.items()}
    refusal: str | None = None
    if not ev.scored:
        refusal = (
            f"{ev.primary}: this data source has no labelled anomalies to score the candidate "
            "against, so it cannot be shown better than the z-score rule"
        )
    elif champ_dir is not None:
        champ = _load(champ_dir)
        champ_end = champ.meta.training.get("train_end")
        if champ.meta.feature_set_version != fsv:
            refusal = (
                f"champion v{champion_version} reads feature set {champ.meta.feature_set_version}"
                f", the candidate {fsv}: they cannot be compared on the same holdout"
            )
        elif champ_end and pd.Timestamp(champ_end).tz_convert(None) >= holdout_start:
            refusal = (
                f"champion v{champion_version} was trained on labels up to {champ_end}, inside "
                f"this holdout (from {holdout_start.isoformat()}Z): it cannot be scored out of "
                "sample; train on a window that ends later"
            )
        else:
            out.champion_metrics = _score_champion(name, champ, frame, hold.test, truth)
            champion_value = out.champion_metrics.get(ev.primary)
            mlflow.log_metrics(_clean(out.champion_metrics, "holdout.champion."))
    if refusal is not None:
        stays = f": champion stays v{champion_version}" if champion_version else ": no champion"
        decision = Decision(
            registered, ev.primary, candidate, base_values, champion_value, champion_version,
            margin, False, refusal + stays,
        )  # fmt: skip
    else:
        decision = decide(
            registered, ev.primary, candidate, base_values, champion_value, margin,
            champion_version=champion_version,
        )  # fmt: skip
    # float64 throughout: a count column may be missing at serving time, which an integer
    # column of the signature could not hold
    example = frame[list(spec.feature_columns)].head(5).astype(np.float64)
    bundle = _load(bundle_dir)
    groups = None
    out_example = bundle.predict(example, groups)
    version = registry.log_candidate(registered, bundle_dir, example, out_example)
    registry.apply(registered, version, run_id, decision, _clean(hold.metrics, ""))
    out.version, out.decision = version, decision
    return out


def _threshold(ev: Evaluation, quantile: float) -> dict[str, float]:
    """The anomaly model's alert threshold: the ``quantile`` of its scores on the holdout rows
    (out of sample, like the live rows serving will flag and write to ``anomalies``)."""
    if ev.kind != "iforest":
        return {}
    scores = ev.holdout.prediction
    return {"score_threshold": float(np.quantile(scores, quantile)), "score_quantile": quantile}


def _load(path: Path) -> Any:
    from signalstack.inference.bundle import load_bundle

    return load_bundle(path)


def _score_champion(
    name: str, champ: Any, frame: pd.DataFrame, rows: np.ndarray, truth: np.ndarray | None
) -> dict[str, float]:
    from signalstack.training.metrics import anomaly_metrics, classification_metrics

    feats = frame[list(champ.meta.feature_columns)]
    if champ.meta.kind == "lstm":
        pred = champ.predict(feats, group_keys(frame))[rows]
    else:
        pred = champ.predict(feats.iloc[rows])
    if name == "anomaly":
        assert truth is not None
        return anomaly_metrics(truth[rows], np.asarray(pred, dtype=np.float64))
    y = frame[name].to_numpy()[rows].astype(np.int64)
    return classification_metrics(y, np.asarray(pred, dtype=np.float64), len(CLASSES[name]))


def _prefixed(prefix: str, d: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}.{k}": v for k, v in d.items()}


def _clean(d: dict[str, float], prefix: str) -> dict[str, float]:
    """MLflow refuses NaN-free nothing, but NaN metrics read badly: drop them."""
    return {f"{prefix}{k}": float(v) for k, v in d.items() if np.isfinite(v)}


def _log_plots(
    name: str, ev: Evaluation, frame: pd.DataFrame, spec: Any, truth: np.ndarray | None
) -> None:
    import matplotlib.pyplot as plt
    import mlflow

    from signalstack.training import plots

    hold = ev.holdout
    figs: dict[str, Any] = {}
    if name == "anomaly":
        if truth is not None:
            figs["pr_curve"] = plots.pr_curve_figure(truth[hold.test], hold.prediction)
    else:
        y = frame[name].to_numpy()[hold.test].astype(np.int64)
        classes = list(CLASSES[name])
        pred = hold.prediction.argmax(axis=1)
        figs["confusion_matrix"] = plots.confusion_matrix_figure(y, pred, classes, title=name)
        figs["calibration"] = plots.calibration_figure(y, hold.prediction, classes)
        if ev.kind == "xgboost":
            names = [*spec.input_names, *(f"{n}_missing" for n in spec.input_names)]
            imp = np.asarray(hold.model.feature_importances_, dtype=np.float64)
            figs["feature_importance"] = plots.feature_importance_figure(names, imp, title=name)
    for key, fig in figs.items():
        mlflow.log_figure(fig, f"plots/{name}_{key}.png")
        plt.close(fig)
    mlflow.log_text(json.dumps({"folds": [f.metrics for f in ev.folds]}, indent=1), "folds.json")


__all__ = ["ModelOutcome", "TrainResult", "dataset_digest", "prepare_tracking", "train"]
