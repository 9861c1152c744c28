"""Evaluation metrics against hand-computed cases (training/metrics.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from signalstack.training.metrics import aggregate, anomaly_metrics, classification_metrics


def one_hot(codes: list[int], k: int = 3) -> np.ndarray:
    return np.eye(k)[codes]


# ---- classification ----------------------------------------------------------------------------
def test_perfect_predictions() -> None:
    y = [0, 1, 2, 0, 1, 2]
    m = classification_metrics(y, one_hot(y))
    assert m["balanced_accuracy"] == 1.0
    assert m["macro_f1"] == 1.0
    assert m["accuracy"] == 1.0
    assert m["roc_auc_ovr"] == 1.0
    assert m["log_loss"] == pytest.approx(0.0, abs=1e-12)
    assert m["n"] == 6.0


def test_known_confusion() -> None:
    y = [0, 0, 1, 1, 2, 2]
    pred = [0, 1, 1, 1, 2, 0]
    m = classification_metrics(y, one_hot(pred))
    # recalls 1/2, 2/2, 1/2
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    # class 0: P 1/2 R 1/2 → F1 1/2; class 1: P 2/3 R 1 → 0.8; class 2: P 1 R 1/2 → 2/3
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["accuracy"] == pytest.approx(4 / 6)


def test_log_loss_by_hand_and_clipped() -> None:
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.25, 0.25, 0.5]])
    m = classification_metrics([0, 2, 2], proba)
    assert m["log_loss"] == pytest.approx(-(math.log(0.7) + math.log(0.3) + math.log(0.5)) / 3)
    # a confident mistake costs ln(1e15) at most (clipped and renormalised), never infinity
    worst = classification_metrics([1], np.array([[1.0, 0.0, 0.0]]))["log_loss"]
    assert worst == pytest.approx(-math.log(1e-15 / (1 + 2e-15)), rel=1e-9)
    # rows not summing to 1 are renormalised: scaling a row down does not change the loss
    scaled = classification_metrics([0, 2, 2], proba * np.array([[0.5], [0.9], [0.2]]))
    assert scaled["log_loss"] == pytest.approx(m["log_loss"])


def test_roc_auc_one_vs_rest_by_hand() -> None:
    y = [0, 0, 1, 1]
    proba = np.array([[0.6, 0.4, 0.0], [0.3, 0.7, 0.0], [0.4, 0.6, 0.0], [0.2, 0.8, 0.0]])
    m = classification_metrics(y, proba)
    # class 0 vs rest: scores of 0s {0.6, 0.3} vs 1s {0.4, 0.2}: pairs won 3 of 4 → 0.75
    # class 1 vs rest: scores of 1s {0.6, 0.8} vs 0s {0.4, 0.7}: pairs won 3 of 4 → 0.75
    # class 2 is absent from y_true: not averaged in
    assert m["roc_auc_ovr"] == pytest.approx(0.75)


def test_fold_with_two_classes_only() -> None:
    y = [0, 2, 2, 0, 2]
    m = classification_metrics(y, one_hot(y))
    assert m["balanced_accuracy"] == 1.0
    assert m["macro_f1"] == 1.0  # the absent class is not averaged in as 0
    assert m["roc_auc_ovr"] == 1.0
    assert math.isfinite(m["log_loss"])
    # predicting the absent class is a mistake that counts in F1 but not as a class of its own
    pred = [0, 2, 1, 0, 2]
    m2 = classification_metrics(y, one_hot(pred))
    assert m2["balanced_accuracy"] == pytest.approx((1.0 + 2 / 3) / 2)
    # class 0 F1 1, class 2 P 1 R 2/3 → 0.8, class 1 (predicted, absent) 0
    assert m2["macro_f1"] == pytest.approx((1.0 + 0.8 + 0.0) / 3)


def test_single_class_has_no_auc() -> None:
    m = classification_metrics([1, 1, 1], one_hot([1, 0, 1]))
    assert math.isnan(m["roc_auc_ovr"])
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)


def test_argmax_tie_is_the_lowest_code() -> None:
    m = classification_metrics([0, 1], np.full((2, 3), 1 / 3))
    assert m["accuracy"] == 0.5
    assert m["log_loss"] == pytest.approx(math.log(3))


def test_constant_guess_scores_chance_balanced_accuracy() -> None:
    rng = np.random.default_rng(1)
    y = rng.choice(3, size=500, p=[0.6, 0.3, 0.1])
    m = classification_metrics(y, np.tile([0.6, 0.3, 0.1], (500, 1)))
    assert m["balanced_accuracy"] == pytest.approx(1 / 3)
    assert m["roc_auc_ovr"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("y", "proba", "match"),
    [
        ([], np.zeros((0, 3)), "no rows"),
        ([0, 1], np.full((3, 3), 1 / 3), "shape"),
        ([0, 1], np.full((2, 2), 1 / 2), "shape"),
        ([0, 3], np.full((2, 3), 1 / 3), "codes in 0"),
        ([0, 1.5], np.full((2, 3), 1 / 3), "codes in 0"),
        ([0, float("nan")], np.full((2, 3), 1 / 3), "missing"),
        ([0, 1], np.array([[0.5, 0.5, 0.0], [np.nan, 0.5, 0.5]]), "finite"),
        ([0, 1], np.array([[1.5, -0.5, 0.0], [0.0, 0.5, 0.5]]), "non-negative"),
    ],
)
def test_bad_classification_input(y: list[float], proba: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        classification_metrics(y, proba)


# ---- anomalies ---------------------------------------------------------------------------------
def test_anomaly_metrics_by_hand() -> None:
    truth = [False, True, False, True, False]
    score = [0.1, 0.9, 0.8, 0.2, 0.0]
    m = anomaly_metrics(truth, score)
    assert m["k"] == 2.0  # default: the number of true anomalies
    assert m["precision_at_k"] == 0.5  # top 2: rows 1 (hit) and 2 (miss)
    assert m["recall_at_k"] == 0.5
    # ranking hit, miss, hit: precision 1 at recall 1/2, 2/3 at recall 1 → AP 1/2 + 1/3
    assert m["pr_auc"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert m["n_anomalies"] == 2.0
    assert m["base_rate"] == pytest.approx(0.4)
    m3 = anomaly_metrics(truth, score, k=4)
    assert (m3["precision_at_k"], m3["recall_at_k"]) == (0.5, 1.0)


def test_anomaly_ties_are_broken_by_position() -> None:
    flat = [1.0, 1.0, 1.0, 1.0]
    assert anomaly_metrics([False, False, False, True], flat)["precision_at_k"] == 0.0
    assert anomaly_metrics([True, False, False, False], flat)["precision_at_k"] == 1.0
    # a tie is one threshold for AP: the base rate, whatever the order
    assert anomaly_metrics([False, False, False, True], flat)["pr_auc"] == pytest.approx(0.25)
    assert anomaly_metrics([True, False, False, False], flat)["pr_auc"] == pytest.approx(0.25)


def test_anomaly_without_positives() -> None:
    m = anomaly_metrics(np.zeros(4, dtype=bool), [0.3, 0.1, 0.2, 0.4])
    assert m["k"] == 1.0
    assert m["precision_at_k"] == 0.0
    assert math.isnan(m["recall_at_k"])
    assert math.isnan(m["pr_auc"])
    assert m["base_rate"] == 0.0


def test_anomaly_k_is_capped_at_n_and_accepts_0_1_truth() -> None:
    m = anomaly_metrics([0, 1, 1], [0.1, 0.2, 0.3], k=10)
    assert m["k"] == 3.0
    assert m["precision_at_k"] == pytest.approx(2 / 3)
    assert m["recall_at_k"] == 1.0


@pytest.mark.parametrize(
    ("truth", "score", "k", "match"),
    [
        ([], [], None, "no rows"),
        ([True], [0.1, 0.2], None, "one length"),
        ([True, False], [0.1, float("nan")], None, "NaN"),
        ([True, False], [0.1, 0.2], 0, "k must be"),
        ([2, 0], [0.1, 0.2], None, "boolean"),
    ],
)
def test_bad_anomaly_input(
    truth: list[object], score: list[float], k: int | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        anomaly_metrics(truth, score, k=k)


# ---- aggregation -------------------------------------------------------------------------------
def test_aggregate_weighted_mean_std_and_summed_counts() -> None:
    folds = [{"a": 1.0, "n": 10.0}, {"a": 3.0, "n": 30.0}]
    out = aggregate(folds, [10, 30])
    assert out["a"] == pytest.approx(2.5)  # (10·1 + 30·3) / 40
    assert out["a_std"] == pytest.approx(1.0)  # unweighted, ddof 0
    assert out["n"] == 40.0
    assert "n_std" not in out


def test_aggregate_ignores_nan_folds() -> None:
    folds = [
        {"roc_auc_ovr": math.nan, "n": 5.0},
        {"roc_auc_ovr": 0.8, "n": 10.0},
        {"roc_auc_ovr": 0.6, "n": 30.0},
    ]
    out = aggregate(folds, [5, 10, 30])
    assert out["roc_auc_ovr"] == pytest.approx((10 * 0.8 + 30 * 0.6) / 40)
    assert out["roc_auc_ovr_std"] == pytest.approx(0.1)
    assert out["n"] == 45.0
    all_nan = aggregate([{"x": math.nan}, {"x": math.nan}], [1, 1])
    assert math.isnan(all_nan["x"])
    assert math.isnan(all_nan["x_std"])


def test_aggregate_of_anomaly_folds_sums_counts() -> None:
    f1 = anomaly_metrics([True, False, False, False], [0.9, 0.1, 0.2, 0.3])
    f2 = anomaly_metrics([True, True, False, False, False, False], [0.1, 0.9, 0.8, 0, 0, 0])
    out = aggregate([f1, f2], [f1["n"], f2["n"]])
    assert out["n"] == 10.0
    assert out["n_anomalies"] == 3.0
    assert out["base_rate"] == pytest.approx(3 / 10)
    assert out["precision_at_k"] == pytest.approx((4 * 1.0 + 6 * 0.5) / 10)


@pytest.mark.parametrize(
    ("folds", "weights", "match"),
    [
        ([], [], "no folds"),
        ([{"a": 1.0}], [1, 2], "weights"),
        ([{"a": 1.0}], [-1], "non-negative"),
    ],
)
def test_bad_aggregate_input(
    folds: list[dict[str, float]], weights: list[float], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        aggregate(folds, weights)
