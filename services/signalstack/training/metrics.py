"""Evaluation metrics of the training job — pure functions of labels and predictions (no I/O).

Every model and every baseline is scored by the same functions on the same test rows, so a
model's figures can be read beside its baselines'. Classifiers (regime, direction) are scored
from class probabilities ``(n, K)``; the predicted class is the argmax (the lowest class code on
a tie). The anomaly model is scored from a score per row (higher = more anomalous) against the
simulator's labelled anomalies.

:func:`classification_metrics`:

- ``balanced_accuracy``: the mean recall over the classes present in ``y_true`` (scikit-learn's
  definition: 1/K for a constant guess, whatever the class balance); a class predicted but absent
  from ``y_true`` is not averaged in;
- ``macro_f1``: the unweighted mean F1 over the classes present in ``y_true`` or predicted
  (a class that is neither — a fold whose test part holds two classes and no prediction of the
  third — has no F1 and is not averaged in as 0, so perfect predictions score 1); a class
  present but never predicted, or predicted but never present, scores 0;
- ``log_loss``: the mean negative log probability of the true class, over all ``K`` classes, the
  probabilities clipped to ``[1e-15, 1]`` and renormalised per row (a confident mistake costs
  at most ``ln 1e15 ≈ 34.5``, never infinity);
- ``roc_auc_ovr``: the macro mean, over the classes present in ``y_true``, of the one-vs-rest
  ROC AUC of the class's probability column; NaN when ``y_true`` holds fewer than 2 classes
  (no class has both positives and negatives);
- ``accuracy``: the share of rows whose argmax is the true class; ``n``: the number of rows.

:func:`anomaly_metrics` ranks the rows by score, highest first, ties by position (stable):

- ``precision_at_k``: the share of true anomalies among the ``k`` top-ranked rows;
- ``recall_at_k``: the share of all true anomalies that are among them;
- ``pr_auc``: the average precision (area under the precision-recall curve, scikit-learn's
  step-wise definition; tied scores form one threshold, so it does not depend on row order);
- ``k`` (default: the number of true anomalies, at least 1; at most ``n``), ``n_anomalies``,
  ``base_rate`` (the anomalies' share of rows: the precision of a random ranking), ``n``.

With no true anomaly in the rows, ``recall_at_k`` and ``pr_auc`` are NaN (undefined) and
``precision_at_k`` is 0.

:func:`aggregate` combines folds: each metric's mean over the folds weighted by the folds' test
sizes, ignoring the folds where it is NaN, and ``<key>_std``, its unweighted standard deviation
over the same folds (ddof 0); the counts ``n``, ``n_anomalies`` and ``k`` are summed instead.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    roc_auc_score,
)

PROBA_CLIP: Final = 1e-15
SUMMED_KEYS: Final = ("n", "n_anomalies", "k")  # counts: aggregate() sums them

F8 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int64]


def class_codes(y: Any, n_classes: int) -> I8:
    """``y`` as int64 class codes, checked to be 1-D and in ``0 … n_classes − 1`` (no missing)."""
    try:
        arr = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"class labels must be integer codes (missing ones dropped): {exc}"
        ) from exc
    if arr.ndim != 1:
        raise ValueError(f"class labels must be 1-D, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError("class labels contain missing values: drop the unlabelled rows first")
    if arr.size and ((arr != np.round(arr)).any() or arr.min() < 0 or arr.max() > n_classes - 1):
        raise ValueError(f"class labels must be integer codes in 0 … {n_classes - 1}")
    return arr.astype(np.int64)


def check_proba(proba: Any, n: int, n_classes: int) -> F8:
    """``proba`` as a finite ``(n, n_classes)`` float64 array of non-negative numbers."""
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape != (n, n_classes):
        raise ValueError(f"probabilities must have shape ({n}, {n_classes}), got {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("probabilities must be finite and non-negative")
    return p


def classification_metrics(y_true: Any, proba: Any, n_classes: int = 3) -> dict[str, float]:
    """Balanced accuracy, macro F1, log loss, one-vs-rest ROC AUC and accuracy of class
    probabilities ``proba`` (n, K) against int codes ``y_true`` (n,) — see the module docstring.
    Raises ValueError on empty input, a shape mismatch, or codes outside ``0 … K − 1``."""
    if n_classes < 2:
        raise ValueError("n_classes must be at least 2")
    y = class_codes(y_true, n_classes)
    if y.size == 0:
        raise ValueError("no rows to score: classification metrics need at least one row")
    p = check_proba(proba, y.size, n_classes)
    pred = p.argmax(axis=1)
    labels = np.arange(n_classes)
    with warnings.catch_warnings():  # a class predicted but absent from y_true: dropped, known
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        bal = float(balanced_accuracy_score(y, pred))
    seen = np.union1d(y, pred)
    f1 = float(f1_score(y, pred, labels=seen, average="macro", zero_division=0))
    clipped = np.clip(p, PROBA_CLIP, 1.0)
    clipped /= clipped.sum(axis=1, keepdims=True)
    loss = float(log_loss(y, clipped, labels=labels))
    present = np.unique(y)
    if present.size < 2:
        auc = math.nan
    else:
        auc = float(np.mean([roc_auc_score(y == c, p[:, c]) for c in present]))
    return {
        "balanced_accuracy": bal,
        "macro_f1": f1,
        "log_loss": loss,
        "roc_auc_ovr": auc,
        "accuracy": float(np.mean(pred == y)),
        "n": float(y.size),
    }


def anomaly_metrics(truth: Any, score: Any, k: int | None = None) -> dict[str, float]:
    """Precision and recall at ``k`` and PR AUC of anomaly scores (higher = more anomalous)
    against boolean ground truth — see the module docstring. Raises ValueError on empty input,
    a length mismatch, NaN scores, or ``k < 1``."""
    t = np.asarray(truth)
    s = np.asarray(score, dtype=np.float64)
    if t.ndim != 1 or s.ndim != 1 or t.shape != s.shape:
        raise ValueError(f"truth and score must be 1-D of one length, got {t.shape}, {s.shape}")
    if t.size == 0:
        raise ValueError("no rows to score: anomaly metrics need at least one row")
    if t.dtype != np.bool_:
        if not np.isin(t, (0, 1)).all():
            raise ValueError("anomaly truth must be boolean (or 0/1)")
        t = t.astype(np.bool_)
    if np.isnan(s).any():
        raise ValueError("anomaly scores contain NaN")
    n = t.size
    positives = int(t.sum())
    if k is None:
        k = max(positives, 1)
    if k < 1:
        raise ValueError("k must be at least 1")
    k = min(int(k), n)
    order = np.argsort(-s, kind="stable")  # highest first; ties by position
    hits = int(t[order[:k]].sum())
    if positives:
        recall = hits / positives
        pr_auc = float(average_precision_score(t, s))
    else:
        recall = pr_auc = math.nan
    return {
        "precision_at_k": hits / k,
        "recall_at_k": recall,
        "pr_auc": pr_auc,
        "k": float(k),
        "n_anomalies": float(positives),
        "base_rate": positives / n,
        "n": float(n),
    }


def aggregate(
    per_fold: Sequence[Mapping[str, float]],
    weights: Sequence[float],
    *,
    summed: Sequence[str] = SUMMED_KEYS,
) -> dict[str, float]:
    """Folds' metrics combined: for each key (in order of first appearance), the mean weighted
    by ``weights`` (the folds' test sizes) over the folds where the value is not NaN (NaN if it is
    NaN in all), and ``<key>_std``, the unweighted standard deviation (ddof 0) over the same
    folds. The keys in ``summed`` (counts) are summed instead, with no ``_std``."""
    if len(per_fold) == 0:
        raise ValueError("no folds to aggregate")
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(per_fold),):
        raise ValueError(f"{len(per_fold)} folds but {w.size} weights")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("fold weights must be finite and non-negative")
    keys = list(dict.fromkeys(key for fold in per_fold for key in fold))
    out: dict[str, float] = {}
    for key in keys:
        v = np.array([float(fold.get(key, math.nan)) for fold in per_fold], dtype=np.float64)
        ok = ~np.isnan(v)
        if key in summed:
            out[key] = float(v[ok].sum()) if ok.any() else math.nan
            continue
        if not ok.any():
            out[key] = out[f"{key}_std"] = math.nan
            continue
        wk = w[ok]
        total = wk.sum()
        out[key] = float((wk * v[ok]).sum() / total) if total > 0 else float(v[ok].mean())
        out[f"{key}_std"] = float(v[ok].std(ddof=0))
    return out
