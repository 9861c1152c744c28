"""Walk-forward evaluation of one model beside its baselines (no MLflow, no I/O).

For each fold of :func:`~signalstack.training.splits.walk_forward` (purged, embargoed): fit the
scaler and the model on the fold's training rows only, predict its test rows, and score the
model and its baselines on exactly those rows — the same rows, the same metric code, the same
run. The last fold's test block is the **holdout** the champion gate compares on; its fitted
model (trained on everything before the holdout, purged) is the candidate that gets exported.

Nothing a fold fits can see a row after its training cut-off: the scaler, the model and the
baselines' statistics are all fitted on ``train`` positions, whose label windows end
``embargo`` before the test block starts (tested by corrupting every later row).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from signalstack.inference.inputs import InputSpec, Scaler, sequences
from signalstack.training import baselines as base
from signalstack.training.labels import DIRECTIONS, REGIMES, utc_ns
from signalstack.training.metrics import aggregate, anomaly_metrics, classification_metrics
from signalstack.training.models import (
    KIND,
    IForestConfig,
    XgbConfig,
    fit_iforest,
    fit_xgboost,
    iforest_score,
)
from signalstack.training.splits import Fold, SplitConfig, walk_forward

PRIMARY: Final = {
    "regime": "balanced_accuracy",
    "direction": "balanced_accuracy",
    "anomaly": "pr_auc",
}
CLASSES: Final = {"regime": REGIMES, "direction": DIRECTIONS, "anomaly": ()}
# the anomaly baseline's inputs: "a z-score rule on returns and volume"
ZSCORE_INPUTS: Final = ("price_momentum_1m", "log_volume_ratio")

Idx = npt.NDArray[np.intp]
# progress(model, stage, done, total): stage "fold" or "epoch"
Progress = Callable[[str, str, int, int], None]


@dataclass
class FoldResult:
    index: int
    train: Idx  # frame positions of the labelled rows the model is fitted on
    test: Idx
    fit_rows: Idx  # every feature row up to the last training decision time: the scaler's rows
    purged: int
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    prediction: npt.NDArray[np.float64]  # (n_test, K) probabilities, or (n_test,) scores
    model: Any
    scaler: Scaler


@dataclass
class Evaluation:
    name: str  # regime | direction | anomaly
    kind: str  # xgboost | lstm | iforest
    primary: str
    folds: list[FoldResult]
    aggregate: dict[str, float]
    baseline_aggregate: dict[str, dict[str, float]]
    scored: bool  # False: no ground truth to score (anomalies outside the simulator)
    seconds: float
    fit_config: dict[str, Any] = field(default_factory=dict)

    @property
    def holdout(self) -> FoldResult:
        return self.folds[-1]


@dataclass(frozen=True)
class ModelConfigs:
    xgb: XgbConfig = field(default_factory=XgbConfig)
    iforest: IForestConfig = field(default_factory=IForestConfig)
    lstm: Any = None  # training.lstm.LstmConfig (torch is imported only when the LSTM trains)
    seed: int = 0


def group_keys(frame: pd.DataFrame) -> npt.NDArray[np.int64]:
    """One integer per (symbol, session) run of a frame ordered by (symbol, ts)."""
    if frame["session"].isna().any():
        raise ValueError("feature rows outside every session: cannot group them for sequences")
    sess = utc_ns(frame["session"])
    codes, _ = pd.factorize(pd.MultiIndex.from_arrays([frame["symbol"].to_numpy(), sess]))
    return np.asarray(codes, dtype=np.int64)


def _label_rows(frame: pd.DataFrame, name: str) -> tuple[Idx, npt.NDArray[np.int64]]:
    lab = frame[name]
    rows = np.flatnonzero(lab.notna().to_numpy())
    return rows, lab.to_numpy()[rows].astype(np.int64)


def evaluate(
    name: str,
    frame: pd.DataFrame,
    spec: InputSpec,
    split: SplitConfig,
    configs: ModelConfigs,
    *,
    anomaly_truth: npt.NDArray[np.bool_] | None = None,
    progress: Progress | None = None,
    inputs: npt.NDArray[np.float64] | None = None,
) -> Evaluation:
    """Walk-forward evaluation of model ``name`` on a training frame (ordered by symbol, ts).
    ``inputs``: ``spec.transform(frame)`` when the caller has it already."""
    t0 = time.perf_counter()
    kind = KIND[name]
    x_in = spec.transform(frame) if inputs is None else inputs
    ts = utc_ns(frame["ts"])
    if name == "anomaly":
        rows = np.arange(len(frame))
        y_all = np.zeros(len(frame), dtype=np.int64)
        ends = ts  # the bar at T itself: no forward window
    else:
        rows, y_all = _label_rows(frame, name)
        ends = utc_ns(frame[f"{name}_end"].to_numpy()[rows])
    if len(rows) == 0:
        raise ValueError(f"{name}: no labelled rows in the frame")
    folds = walk_forward(ts[rows], ends, split)
    groups = group_keys(frame) if kind == "lstm" else None
    n_classes = len(CLASSES[name])
    results: list[FoldResult] = []
    for fold in folds:
        if progress:
            progress(name, "fold", fold.index - 1, len(folds))
        results.append(
            _fold(
                name,
                kind,
                fold,
                rows,
                y_all,
                frame,
                ts,
                x_in,
                spec,
                groups,
                configs,
                n_classes,
                anomaly_truth,
                progress,
            )
        )
    if progress:
        progress(name, "fold", len(folds), len(folds))
    weights = [float(len(r.test)) for r in results]
    scored = name != "anomaly" or anomaly_truth is not None
    agg = aggregate([r.metrics for r in results], weights) if scored else {}
    base_names = sorted(results[0].baselines)
    base_agg = {
        b: aggregate([r.baselines[b] for r in results], weights) if scored else {}
        for b in base_names
    }
    cfg: dict[str, Any] = {
        "xgboost": configs.xgb,
        "iforest": configs.iforest,
        "lstm": configs.lstm,
    }[kind]
    return Evaluation(
        name, kind, PRIMARY[name], results, agg, base_agg, scored, time.perf_counter() - t0,
        fit_config=_asdict(cfg),
    )  # fmt: skip


def _asdict(cfg: Any) -> dict[str, Any]:
    if cfg is None:
        return {}
    return {k: getattr(cfg, k) for k in getattr(cfg, "__dataclass_fields__", {})}


def _fold(
    name: str,
    kind: str,
    fold: Fold,
    rows: Idx,
    y_all: npt.NDArray[np.int64],
    frame: pd.DataFrame,
    ts: npt.NDArray[np.int64],  # the frame's decision times, ns
    x_in: npt.NDArray[np.float64],
    spec: InputSpec,
    groups: npt.NDArray[np.int64] | None,
    configs: ModelConfigs,
    n_classes: int,
    truth: npt.NDArray[np.bool_] | None,
    progress: Progress | None,
) -> FoldResult:
    tr, te = rows[fold.train], rows[fold.test]
    y_tr, y_te = y_all[fold.train], y_all[fold.test]
    # the scaler (and the PSI reference) see every feature row known by the last training
    # decision, labelled or not: the last minutes of each session have no forward label but
    # serving sees them. All of them precede the test block (purging and the embargo).
    fit_rows = np.flatnonzero(ts <= ts[tr].max())
    scaler = Scaler.fit(x_in[fit_rows], indicators=kind != "iforest")
    seed = configs.seed + fold.index
    if kind == "iforest":
        model = fit_iforest(scaler.transform(x_in[tr]), configs.iforest)
        score = iforest_score(model, scaler.transform(x_in[te]))
        metrics, baselines = _score_anomaly(frame, x_in, spec, tr, te, score, truth)
        return FoldResult(
            fold.index, tr, te, fit_rows, fold.purged, metrics, baselines, score, model, scaler
        )
    if kind == "xgboost":
        model = fit_xgboost(scaler.transform(x_in[tr]), y_tr, configs.xgb, n_classes)
        proba = np.asarray(model.predict_proba(scaler.transform(x_in[te])), dtype=np.float64)
    else:
        from signalstack.training.lstm import fit_lstm, predict_proba

        assert groups is not None and configs.lstm is not None
        scaled = scaler.transform(x_in)  # transform only: the scaler saw training rows alone
        seq = sequences(scaled, groups, configs.lstm.sequence_length, pad=scaler.missing_row())

        def on_epoch(epoch: int, _loss: float) -> None:
            if progress:
                progress(name, "epoch", epoch, configs.lstm.epochs)

        model = fit_lstm(seq[tr], y_tr, configs.lstm, n_classes=n_classes, on_epoch=on_epoch)
        proba = predict_proba(model, seq[te])
    metrics = classification_metrics(y_te, proba, n_classes)
    prior = base.majority(y_tr, 1, n_classes)[0]
    baselines = {
        "majority": classification_metrics(
            y_te, base.majority(y_tr, len(te), n_classes), n_classes
        ),
        "stratified": classification_metrics(
            y_te, base.stratified_random(y_tr, len(te), n_classes, seed=seed), n_classes
        ),
        "persistence": classification_metrics(
            y_te,
            base.persistence(frame, te, name, f"{name}_end", n_classes, fallback=prior),
            n_classes,
        ),
    }
    return FoldResult(
        fold.index, tr, te, fit_rows, fold.purged, metrics, baselines, proba, model, scaler
    )


def _score_anomaly(
    frame: pd.DataFrame,
    x_in: npt.NDArray[np.float64],
    spec: InputSpec,
    tr: Idx,
    te: Idx,
    score: npt.NDArray[np.float64],
    truth: npt.NDArray[np.bool_] | None,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    cols = [spec.input_names.index(c) for c in ZSCORE_INPUTS if c in spec.input_names]
    sym = frame["symbol"].to_numpy()
    z = base.zscore_scores(x_in[tr][:, cols], sym[tr], x_in[te][:, cols], sym[te])
    if truth is None:  # unscored: what is flagged, for the record
        q = float(np.quantile(score, 0.99)) if len(score) else float("nan")
        return {"n": float(len(te)), "score_p99": q}, {"zscore": {"n": float(len(te))}}
    return anomaly_metrics(truth[te], score), {"zscore": anomaly_metrics(truth[te], z)}


__all__ = [
    "CLASSES",
    "PRIMARY",
    "ZSCORE_INPUTS",
    "Evaluation",
    "FoldResult",
    "ModelConfigs",
    "Progress",
    "evaluate",
    "group_keys",
]
