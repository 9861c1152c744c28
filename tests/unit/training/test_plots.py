"""The run's plots: what each figure draws, and that it saves as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle

from signalstack.training.plots import (
    calibration_figure,
    confusion_matrix_figure,
    feature_importance_figure,
    pr_curve_figure,
)

CLASSES = ("calm", "trending", "volatile")
PNG = b"\x89PNG\r\n\x1a\n"


def saves_png(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=80)
    assert path.read_bytes()[:8] == PNG
    assert path.stat().st_size > 2_000


def test_confusion_matrix_counts_and_shares(tmp_path: Path) -> None:
    y_true = pd.array([0, 0, 0, 1, 1, 2, 2, 2, 2, pd.NA], dtype="Int8")
    y_pred = np.array([0, 0, 1, 1, 2, 2, 2, 2, 0, 1])
    fig = confusion_matrix_figure(y_true, y_pred, CLASSES, title="regime fold 3")
    (ax, _colorbar) = fig.axes
    assert ax.get_title() == "regime fold 3"
    assert [t.get_text() for t in ax.get_xticklabels()] == list(CLASSES)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CLASSES)
    (image,) = [a for a in ax.get_children() if isinstance(a, AxesImage)]
    shares = np.asarray(image.get_array())
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)  # each true class's row
    np.testing.assert_allclose(shares[0], [2 / 3, 1 / 3, 0])
    cells = [t.get_text() for t in ax.texts]
    assert cells[0] == "2\n67%"  # (calm, calm): the missing truth is left out
    assert cells[8] == "3\n75%"  # (volatile, volatile)
    saves_png(fig, tmp_path / "cm.png")


def test_confusion_matrix_takes_class_names_and_titles_itself() -> None:
    fig = confusion_matrix_figure(["up", "down", "up"], ["up", "up", "up"], ("down", "flat", "up"))
    assert fig.axes[0].get_title() == "confusion matrix (n = 3)"
    assert fig.axes[0].texts[2].get_text() == "1\n100%"  # (down, up)


def test_calibration_has_the_diagonal_and_one_curve_per_class(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    proba = rng.dirichlet([1, 1, 1], size=600)
    y = np.array([rng.choice(3, p=p) for p in proba])  # calibrated by construction
    fig = calibration_figure(y, proba, CLASSES)
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == ["perfectly calibrated", *CLASSES]
    np.testing.assert_array_equal(lines[0].get_xydata(), [[0, 0], [1, 1]])
    for ln in lines[1:]:
        xy = ln.get_xydata()
        assert len(xy) == 10  # quantile bins
        assert np.abs(xy[:, 0] - xy[:, 1]).mean() < 0.1  # close to the diagonal
    assert ax.get_legend() is not None
    saves_png(fig, tmp_path / "calibration.png")


def test_calibration_skips_a_class_absent_from_the_truth_and_checks_shapes() -> None:
    proba = np.full((4, 3), 1 / 3)
    fig = calibration_figure([0, 1, 0, 1], proba, CLASSES, n_bins=2)
    assert [ln.get_label() for ln in fig.axes[0].get_lines()][1:] == ["calm", "trending"]
    with pytest.raises(ValueError, match=r"proba must be \(n, 3\)"):
        calibration_figure([0, 1], proba, CLASSES)


def test_feature_importance_bars_sorted_largest_on_top(tmp_path: Path) -> None:
    names = ["a", "b", "c", "d"]
    fig = feature_importance_figure(names, [0.1, 0.4, np.nan, 0.25], title="regime")
    (ax,) = fig.axes
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    # barh draws bottom-up: the top bar (largest) is the last one
    assert [t.get_text() for t in ax.get_yticklabels()] == ["c", "a", "d", "b"]
    widths = [b.get_width() for b in bars]
    assert widths[1:] == [0.1, 0.25, 0.4] and np.isnan(widths[0])
    assert ax.get_title() == "regime"
    saves_png(fig, tmp_path / "importance.png")
    with pytest.raises(ValueError, match="4 names for 3"):
        feature_importance_figure(names, [1, 2, 3])


def test_feature_importance_keeps_the_top_n() -> None:
    names = [f"f{i}" for i in range(50)]
    fig = feature_importance_figure(names, np.arange(50.0), top=5)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["f45", "f46", "f47", "f48", "f49"]


def test_pr_curve_with_the_zscore_baseline(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    truth = rng.random(500) < 0.05
    score = truth * 2.0 + rng.normal(size=500)  # informative
    baseline = rng.normal(size=500)  # not
    fig = pr_curve_figure(truth, score, baseline_score=baseline)
    (ax,) = fig.axes
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert labels[0].startswith("model (AP ") and labels[1].startswith("z-score baseline (AP ")
    assert labels[2] == f"prevalence {truth.mean():.3f}"
    ap_model, ap_base = (float(lb.split("AP ")[1].rstrip(")")) for lb in labels[:2])
    assert ap_model > ap_base
    saves_png(fig, tmp_path / "pr.png")


def test_pr_curve_without_a_baseline_or_positives() -> None:
    fig = pr_curve_figure([0, 1, 0, 1], [0.1, 0.9, 0.2, np.nan])
    assert [ln.get_label() for ln in fig.axes[0].get_lines()][:1] == ["model (AP 1.000)"]
    fig = pr_curve_figure([0, 0, 0], [0.1, 0.2, 0.3])
    assert [ln.get_label() for ln in fig.axes[0].get_lines()] == ["prevalence 0.000"]
    with pytest.raises(ValueError, match="2 model scores for 3 labels"):
        pr_curve_figure([0, 1, 0], [0.1, 0.2])
