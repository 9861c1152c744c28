"""The champion gate (registry.decide): every branch, with the reason it gives."""

from __future__ import annotations

import json
import math

import pytest

from signalstack.training.registry import decide

BASE = {"majority": 0.333, "persistence": 0.351, "stratified": 0.336}


def test_first_candidate_that_beats_every_baseline_is_promoted() -> None:
    d = decide("direction", "balanced_accuracy", 0.412, BASE, None, 0.02)
    assert d.promote and d.outcome == "promoted"
    assert d.reason == (
        "balanced_accuracy 0.412 beats majority 0.333, persistence 0.351, stratified 0.336 "
        "by ≥ 0.020, no champion yet: promoted"
    )
    assert (d.model, d.metric, d.champion, d.champion_version) == (
        "direction", "balanced_accuracy", None, None,
    )  # fmt: skip


def test_a_candidate_below_the_best_baseline_plus_margin_is_refused() -> None:
    d = decide("direction", "balanced_accuracy", 0.360, BASE, 0.30, 0.02, champion_version="3")
    assert not d.promote and d.outcome == "refused"
    assert d.reason == (
        "balanced_accuracy 0.360 does not beat persistence 0.351 by 0.020 "
        "(other baselines: majority 0.333, stratified 0.336): refused, champion stays v3"
    )


def test_beating_the_baselines_but_not_the_champion_keeps_the_champion() -> None:
    d = decide("direction", "balanced_accuracy", 0.412, BASE, 0.401, 0.02, champion_version="3")
    assert not d.promote
    assert d.reason == (
        "balanced_accuracy 0.412 beats majority 0.333, persistence 0.351, stratified 0.336 "
        "by ≥ 0.020, but not champion v3 (0.401) by 0.020: champion stays v3"
    )


def test_beating_the_baselines_and_the_champion_promotes() -> None:
    d = decide("regime", "balanced_accuracy", 0.45, BASE, 0.40, 0.02, champion_version="7")
    assert d.promote
    assert d.reason.endswith("and champion v7 (0.400) by ≥ 0.020: promoted")


@pytest.mark.parametrize(
    ("candidate", "promote"),
    [(0.372, True), (0.371, True), (0.3709, False)],  # persistence 0.351 + margin 0.02 = 0.371
)
def test_a_tie_at_exactly_the_margin_over_the_best_baseline_passes(
    candidate: float, promote: bool
) -> None:
    assert decide("m", "x", candidate, BASE, None, 0.02).promote is promote


def test_ties_at_exactly_the_margin_pass_despite_float_rounding() -> None:
    # in binary floating point these differences fall just short of the margin
    assert 0.3 - 0.1 < 0.2 and 0.421 - 0.401 < 0.02
    assert decide("m", "x", 0.3, {"majority": 0.1}, None, 0.2).promote
    assert decide("m", "x", 0.421, {"majority": 0.3}, 0.401, 0.02, "1").promote
    assert not decide("m", "x", 0.2999999, {"majority": 0.1}, None, 0.2).promote
    assert not decide("m", "x", 0.4209999, {"majority": 0.3}, 0.401, 0.02, "1").promote


def test_a_zero_margin_promotes_an_equal_candidate() -> None:
    assert decide("m", "x", 0.5, {"majority": 0.5}, 0.5, 0.0, "2").promote


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_candidate_that_is_not_a_finite_number_is_refused(bad: float) -> None:
    d = decide("anomaly", "pr_auc", bad, {"zscore": 0.1}, None, 0.01)
    assert not d.promote
    assert "not a finite number: refused, no champion yet" in d.reason
    d = decide("anomaly", "pr_auc", bad, {"zscore": 0.1}, 0.2, 0.01, champion_version="4")
    assert not d.promote and d.reason.endswith("champion stays v4")


def test_no_baselines_means_nothing_shows_the_model_learnt_anything() -> None:
    d = decide("regime", "balanced_accuracy", 0.9, {}, None, 0.02)
    assert not d.promote
    assert d.reason == "balanced_accuracy 0.900, but no baselines to beat: refused, no champion yet"
    d = decide("regime", "balanced_accuracy", 0.9, {"majority": math.nan}, None, 0.02)
    assert not d.promote
    assert "no baseline to beat (majority n/a)" in d.reason


def test_a_baseline_that_is_not_a_number_is_no_bar() -> None:
    d = decide("m", "x", 0.5, {"majority": 0.4, "persistence": math.nan}, None, 0.02)
    assert d.promote
    assert (
        d.reason
        == "x 0.500 beats majority 0.400 by ≥ 0.020 (persistence n/a), no champion yet: promoted"
    )


def test_a_champion_that_could_not_be_scored_stays() -> None:
    d = decide("m", "x", 0.9, {"majority": 0.4}, math.nan, 0.02, champion_version="2")
    assert not d.promote
    assert d.reason.endswith("but champion v2 scored n/a on this holdout: champion stays v2")


def test_a_champion_without_a_version_is_still_a_bar() -> None:
    d = decide("m", "x", 0.41, {"majority": 0.3}, 0.40, 0.02)
    assert not d.promote
    assert d.reason.endswith("but not the champion (0.400) by 0.020: the champion stays")


@pytest.mark.parametrize("margin", [-0.01, math.nan, math.inf])
def test_the_margin_must_be_a_finite_non_negative_number(margin: float) -> None:
    with pytest.raises(ValueError, match="margin"):
        decide("m", "x", 0.5, BASE, None, margin)


def test_to_dict_is_json_safe() -> None:
    d = decide("m", "x", math.nan, {"majority": math.nan, "stratified": 0.3}, 0.4, 0.02, "5")
    out = json.loads(json.dumps(d.to_dict(), allow_nan=False))
    assert out == {
        "model": "m",
        "metric": "x",
        "candidate": None,
        "baselines": {"majority": None, "stratified": 0.3},
        "champion": 0.4,
        "champion_version": "5",
        "margin": 0.02,
        "promote": False,
        "reason": d.reason,
        "decision": "refused",
    }
