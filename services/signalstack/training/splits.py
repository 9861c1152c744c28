"""Walk-forward splits with purging and an embargo (pure; docs/MODELS.md).

Each row is a labelled decision: its decision time ``t0 = T`` and its label window's end
``t1 = T + h`` (the label reads the bars stamped in ``(t0, t1]``). The sorted distinct decision
times are cut into ``n_splits + 1`` consecutive blocks of (nearly) equal size; fold ``k``
(``k = 1 … n_splits``) tests on block ``k`` and trains on the blocks before it — all of them
(``expanding``) or the last ``rolling_train_blocks`` (``rolling``).

**Purging and embargo**: a training row is kept only if ``t1 + embargo < test_start``, the
first decision time of the fold's test block. So every training label is resolved strictly
before the first test decision (``max(train t1) < min(test t0)``), no training label window
overlaps a test label window (test windows start at ``t0 ≥ test_start``), and at least
``embargo`` separates them — the gap that keeps serially correlated inputs (a test row's
features read up to 15 minutes back) from seeing the bars a training label was made of. The
embargo is sized from the label horizon (``TRAIN_EMBARGO_HORIZONS`` × the longest horizon).

Test blocks are ordered, disjoint and together cover every row after the first block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from signalstack.features.sessions import NS_PER_MINUTE
from signalstack.training.labels import utc_ns

if TYPE_CHECKING:
    from signalstack.config import TrainingSettings

Scheme = Literal["expanding", "rolling"]
Index = npt.NDArray[np.intp]


@dataclass(frozen=True, slots=True)
class SplitConfig:
    n_splits: int = 4
    scheme: Scheme = "expanding"
    rolling_train_blocks: int = 2
    embargo_ns: int = 0

    def __post_init__(self) -> None:
        if self.n_splits < 1:
            raise ValueError("n_splits must be at least 1")
        if self.scheme not in ("expanding", "rolling"):
            raise ValueError(f"unknown split scheme {self.scheme!r}: expanding or rolling")
        if self.rolling_train_blocks < 1:
            raise ValueError("rolling_train_blocks must be at least 1")
        if self.embargo_ns < 0:
            raise ValueError("embargo must be >= 0")

    @classmethod
    def from_settings(cls, s: TrainingSettings, horizon_minutes: int) -> SplitConfig:
        """``horizon_minutes``: the longest label horizon (the embargo's unit)."""
        embargo = round(s.embargo_horizons * horizon_minutes * NS_PER_MINUTE)
        return cls(s.n_splits, s.split_scheme, s.rolling_train_blocks, int(embargo))


@dataclass(frozen=True, slots=True)
class Fold:
    index: int  # 1 … n_splits
    train: Index  # row positions, ascending
    test: Index
    test_start: int  # ns, first decision time of the test block
    test_end: int  # ns, last decision time of the test block
    purged: int  # training candidates dropped by purging and the embargo


def walk_forward(decision_ts: Any, label_end_ts: Any, config: SplitConfig) -> list[Fold]:
    """Folds over rows given their decision times and label-window ends (datetimes or int ns,
    any order). Raises ValueError when the data cannot give ``n_splits`` folds, or when a
    fold has no training row left after purging and the embargo."""
    t0 = utc_ns(decision_ts)
    t1 = utc_ns(label_end_ts)
    if t0.shape != t1.shape:
        raise ValueError("decision times and label ends differ in length")
    if (t1 < t0).any():
        raise ValueError("a label window ends before its decision time")
    times = np.unique(t0)
    n_blocks = config.n_splits + 1
    if len(times) < n_blocks:
        raise ValueError(
            f"{len(times)} distinct decision times cannot make {config.n_splits} folds"
        )
    # block of each distinct time: n_blocks consecutive runs of (nearly) equal length
    first = np.array([int(c[0]) for c in np.array_split(np.arange(len(times)), n_blocks)])
    block = np.searchsorted(first, np.searchsorted(times, t0), side="right") - 1
    folds: list[Fold] = []
    for k in range(1, n_blocks):
        test = np.flatnonzero(block == k)
        start = int(t0[test].min())
        lo = 0 if config.scheme == "expanding" else max(0, k - config.rolling_train_blocks)
        cand = np.flatnonzero((block >= lo) & (block < k))
        keep = t1[cand] + config.embargo_ns < start
        train = cand[keep]
        if len(train) == 0:
            raise ValueError(
                f"fold {k}: no training row left after purging and an embargo of "
                f"{config.embargo_ns / NS_PER_MINUTE:g} min; use fewer folds or more data"
            )
        folds.append(Fold(k, train, test, start, int(t0[test].max()), int(len(cand) - len(train))))
    return folds
