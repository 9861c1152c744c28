"""The run's plots (matplotlib, Agg backend): confusion matrix, calibration, feature importance,
and the anomaly model's precision-recall curve. Each function returns a new Figure that the
caller logs (``mlflow.log_figure``) or saves; the figures are not registered with pyplot,
so nothing needs closing and nothing is kept once the caller drops them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ArrayLike = npt.ArrayLike


def _figure(width: float, height: float) -> Figure:
    # A Figure on an Agg canvas, not through pyplot: no display needed, whatever backend the
    # process picked, and no global registry keeps it alive once the caller drops it.
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def confusion_matrix_figure(
    y_true: ArrayLike, y_pred: ArrayLike, classes: Sequence[str], title: str = ""
) -> Figure:
    """Counts per (true, predicted) class as a heat map, each cell annotated with its count
    and its share of the true class (the row). ``y_true``/``y_pred`` are class codes
    0..len(classes)-1 (or class names); rows whose truth or prediction is missing are left
    out."""
    from sklearn.metrics import confusion_matrix

    names = list(classes)
    t, p = _codes(y_true, names), _codes(y_pred, names)
    keep = (t >= 0) & (p >= 0)
    cm = confusion_matrix(t[keep], p[keep], labels=list(range(len(names))))
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)

    fig = _figure(1.2 * len(names) + 2.5, 1.1 * len(names) + 1.8)
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, label="share of the true class")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(
                j, i, f"{cm[i, j]}\n{share[i, j]:.0%}", ha="center", va="center",
                color="white" if share[i, j] > 0.5 else "black", fontsize=9,
            )  # fmt: skip
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"confusion matrix (n = {int(keep.sum())})")
    return fig


def calibration_figure(
    y_true: ArrayLike,
    proba: ArrayLike,
    classes: Sequence[str],
    title: str = "",
    n_bins: int = 10,
) -> Figure:
    """Reliability curve per class, one-vs-rest: the observed frequency of the class against
    the mean predicted probability in quantile bins, beside the diagonal (perfect calibration).
    A class absent from ``y_true`` is drawn as nothing (no curve can be computed)."""
    from sklearn.calibration import calibration_curve

    names = list(classes)
    t = _codes(y_true, names)
    pr = np.asarray(proba, dtype=float)
    if pr.ndim != 2 or pr.shape != (len(t), len(names)):
        raise ValueError(f"proba must be (n, {len(names)}) for {len(t)} labels, got {pr.shape}")
    keep = (t >= 0) & np.isfinite(pr).all(axis=1)

    fig = _figure(5.5, 5.0)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    for k, name in enumerate(names):
        hit = t[keep] == k
        if hit.all() or not hit.any():
            continue  # one-vs-rest needs both outcomes
        frac, mean = calibration_curve(hit, pr[keep, k], n_bins=n_bins, strategy="quantile")
        ax.plot(mean, frac, marker="o", label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title(title or "calibration (one vs rest)")
    ax.legend(loc="upper left")
    return fig


def feature_importance_figure(
    names: Sequence[str], importances: ArrayLike, title: str = "", top: int = 30
) -> Figure:
    """Horizontal bars, largest importance at the top; at most ``top`` features."""
    imp = np.asarray(importances, dtype=float).reshape(-1)
    if len(imp) != len(names):
        raise ValueError(f"{len(names)} names for {len(imp)} importances")
    order = np.argsort(-np.nan_to_num(imp, nan=-np.inf), kind="stable")[:top]
    shown = [str(names[i]) for i in order][::-1]  # barh draws bottom-up
    values = imp[order][::-1]

    fig = _figure(7.0, 0.28 * len(shown) + 1.5)
    ax = fig.add_subplot()
    ax.barh(range(len(shown)), values, color="tab:blue")
    ax.set_yticks(range(len(shown)), shown, fontsize=8)
    ax.set_xlabel("importance")
    ax.set_title(title or "feature importance")
    return fig


def pr_curve_figure(
    truth: ArrayLike, score: ArrayLike, baseline_score: ArrayLike | None = None, title: str = ""
) -> Figure:
    """Precision-recall curve of the anomaly score against the labelled anomalies, with the
    z-score baseline's curve when given, each with its average precision (PR AUC) in the
    legend, and the prevalence (a random score's precision) as a horizontal line."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    y = np.asarray(truth).astype(bool).reshape(-1)
    fig = _figure(5.5, 4.5)
    ax = fig.add_subplot()
    curves: list[tuple[str, Any]] = [("model", score)]
    if baseline_score is not None:
        curves.append(("z-score baseline", baseline_score))
    for label, s in curves:
        sc = np.asarray(s, dtype=float).reshape(-1)
        if len(sc) != len(y):
            raise ValueError(f"{len(sc)} {label} scores for {len(y)} labels")
        ok = np.isfinite(sc)
        if not y[ok].any():
            continue  # no positive: no curve
        precision, recall, _ = precision_recall_curve(y[ok], sc[ok])
        ap = average_precision_score(y[ok], sc[ok])
        ax.step(recall, precision, where="post", label=f"{label} (AP {ap:.3f})")
    prevalence = float(y.mean()) if len(y) else 0.0
    ax.axhline(prevalence, linestyle="--", color="grey", label=f"prevalence {prevalence:.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title or "anomalies: precision-recall")
    ax.legend(loc="upper right")
    return fig


def _codes(values: ArrayLike, names: list[str]) -> npt.NDArray[np.int64]:
    """Class codes (ints, or names of ``names``) → int codes, -1 where missing or unknown."""
    arr = np.asarray(values, dtype=object).reshape(-1)
    out = np.full(len(arr), -1, dtype=np.int64)
    index = {n: i for i, n in enumerate(names)}
    for i, v in enumerate(arr):
        if pd.isna(v):
            continue
        if isinstance(v, str):
            out[i] = index.get(v, -1)
        else:
            code = int(v)
            out[i] = code if 0 <= code < len(names) else -1
    return out


__all__ = [
    "calibration_figure",
    "confusion_matrix_figure",
    "feature_importance_figure",
    "pr_curve_figure",
]
