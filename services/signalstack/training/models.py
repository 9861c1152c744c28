"""The three models, fitted on a training fold's prepared inputs (docs/MODELS.md).

Every model sees the same prepared matrix: :mod:`signalstack.inference.inputs` turns the stored
features into scale-free inputs, a :class:`~signalstack.inference.inputs.Scaler` fitted on the
training rows standardises them and adds a missing indicator per input. The LSTM sees the same
rows stacked into within-session sequences (:mod:`signalstack.training.lstm`).

- **regime**: XGBoost (``multi:softprob``, ``hist``), balanced sample weights so the rarer
  ``volatile`` regime is not drowned by ``calm``;
- **direction**: the LSTM (lstm.py);
- **anomaly**: scikit-learn's Isolation Forest, unsupervised; its score is ``−score_samples``
  (higher = more anomalous).

Each fit is deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from signalstack.config import TrainingSettings

MODELS: Final = ("regime", "direction", "anomaly")
KIND: Final = {"regime": "xgboost", "direction": "lstm", "anomaly": "iforest"}
ALIASES: Final = {"xgboost": "regime", "lstm": "direction", "iforest": "anomaly", "all": "all"}


@dataclass(frozen=True, slots=True)
class XgbConfig:
    # shallow and slow: 200 trees of depth 4 at 0.1 overfit a few thousand rows (log loss worse
    # than the class prior's on simulated sessions); 100 × depth 3 at 0.05 does not
    n_estimators: int = 100
    max_depth: int = 3
    learning_rate: float = 0.05
    threads: int = 2
    seed: int = 0

    @classmethod
    def from_settings(cls, s: TrainingSettings) -> XgbConfig:
        return cls(s.xgb_n_estimators, s.xgb_max_depth, s.xgb_learning_rate, s.threads, s.seed)


@dataclass(frozen=True, slots=True)
class IForestConfig:
    n_estimators: int = 200
    seed: int = 0

    @classmethod
    def from_settings(cls, s: TrainingSettings) -> IForestConfig:
        return cls(s.iforest_n_estimators, s.seed)


def balanced_weights(y: npt.NDArray[np.integer[Any]], n_classes: int) -> npt.NDArray[np.float64]:
    """Per-row weights ``n / (K_present · count(class))``: every class present weighs the same."""
    y = np.asarray(y, dtype=np.int64)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = int((counts > 0).sum())
    w = np.divide(len(y), present * counts, out=np.zeros(n_classes), where=counts > 0)
    out: npt.NDArray[np.float64] = w[y]
    return out


def fit_xgboost(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.integer[Any]],
    config: XgbConfig = XgbConfig(),
    n_classes: int = 3,
) -> Any:
    """An ``xgboost.XGBClassifier`` over all ``n_classes`` (a class absent from this fold's
    training rows gets no trees of its own but keeps its column in the probabilities)."""
    import xgboost as xgb

    y = np.asarray(y, dtype=np.int64)
    present = np.unique(y)
    model = xgb.XGBClassifier(
        n_estimators=config.n_estimators,
        max_depth=config.max_depth,
        learning_rate=config.learning_rate,
        objective="multi:softprob",
        num_class=n_classes,
        tree_method="hist",
        n_jobs=config.threads,
        random_state=config.seed,
        eval_metric="mlogloss",
    )
    if len(present) < n_classes:
        # XGBClassifier insists on labels 0..K-1 all present: add one zero-weight row per
        # missing class, which changes no split and no leaf value
        missing = np.setdiff1d(np.arange(n_classes), present)
        x = np.concatenate([x, np.repeat(x[:1], len(missing), axis=0)])
        w = np.concatenate([balanced_weights(y, n_classes), np.zeros(len(missing))])
        y = np.concatenate([y, missing])
    else:
        w = balanced_weights(y, n_classes)
    model.fit(x, y, sample_weight=w)
    return model


def fit_iforest(x: npt.NDArray[np.float32], config: IForestConfig = IForestConfig()) -> Any:
    """A scikit-learn ``IsolationForest`` (score with :func:`iforest_score`)."""
    from sklearn.ensemble import IsolationForest

    model = IsolationForest(n_estimators=config.n_estimators, random_state=config.seed, n_jobs=1)
    model.fit(x)
    return model


def iforest_score(model: Any, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Higher = more anomalous (the negated ``score_samples``)."""
    return -np.asarray(model.score_samples(x), dtype=np.float64)


__all__ = [
    "ALIASES",
    "KIND",
    "MODELS",
    "IForestConfig",
    "XgbConfig",
    "balanced_weights",
    "fit_iforest",
    "fit_xgboost",
    "iforest_score",
]
