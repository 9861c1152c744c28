"""Population stability index (drift/psi.py): reference buckets, drift detection, round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from signalstack.drift.psi import (
    EPSILON,
    PSI_ALERT,
    PSI_WARN,
    PsiReference,
    psi,
    psi_level,
    reference_distribution,
)

N = 20_000
NAMES = ["normal", "lognormal", "uniform"]


def sample(seed: int, n: int = N, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [
            rng.normal(shift, 1.0, n),
            rng.lognormal(0.0, 0.8, n),
            rng.uniform(-2.0, 3.0, n),
        ]
    )


def test_reference_buckets_are_deciles_and_a_missing_bucket() -> None:
    ref = reference_distribution(sample(0), NAMES)
    assert ref.names == tuple(NAMES)
    assert ref.bins == 10
    for cuts, shares in zip(ref.edges, ref.expected, strict=True):
        assert len(cuts) == 9
        assert len(shares) == 11
        np.testing.assert_allclose(shares[:-1], 0.1, atol=1e-3)
        assert shares[-1] == 0.0  # no missing value in training


def test_same_distribution_is_stable() -> None:
    ref = reference_distribution(sample(0), NAMES)
    values = psi(ref, sample(1))
    assert set(values) == set(NAMES)
    for name, v in values.items():
        assert 0 <= v < 0.02, name
        assert psi_level(v) == "stable"


def test_a_one_sd_mean_shift_is_an_alert() -> None:
    ref = reference_distribution(sample(0), NAMES)
    values = psi(ref, sample(1, shift=1.0))
    assert values["normal"] > PSI_ALERT
    assert psi_level(values["normal"]) == "alert"
    assert values["uniform"] < 0.02  # the other inputs did not move


def test_a_change_in_the_missing_rate_alone_is_detected() -> None:
    rng = np.random.default_rng(2)
    train = rng.normal(size=(N, 1))
    train[rng.random(N) < 0.05] = np.nan
    ref = reference_distribution(train, ["x"])
    assert ref.expected[0][-1] == pytest.approx(0.05, abs=0.01)
    live = rng.normal(size=(N, 1))  # same values where present
    live[rng.random(N) < 0.30] = np.nan
    assert psi(ref, live)["x"] > PSI_ALERT
    same_rate = rng.normal(size=(N, 1))
    same_rate[rng.random(N) < 0.05] = np.inf  # ±inf counts as missing too
    assert psi(ref, same_rate)["x"] < 0.02
    # missing values appearing where training had none
    clean = reference_distribution(rng.normal(size=(N, 1)), ["x"])
    some = rng.normal(size=(N, 1))
    some[: N // 10] = np.nan
    assert psi(clean, some)["x"] > PSI_ALERT


def test_constant_and_discrete_inputs() -> None:
    n = 1000
    flag = np.r_[np.zeros(700), np.ones(300)]
    train = np.column_stack([np.full(n, 3.0), flag, np.arange(n) % 4])
    ref = reference_distribution(train, ["const", "flag", "count"])
    assert psi(ref, train) == {"const": 0.0, "flag": 0.0, "count": 0.0}
    # the same mixes in another order and size: still stable
    assert max(psi(ref, train[::-3]).values()) < 0.02
    # a constant that moves, up or down, is an alert
    for moved in (4.0, 2.0):
        live = train.copy()
        live[:, 0] = moved
        assert psi(ref, live)["const"] > PSI_ALERT
    # the flag's mix flips; a value never seen between two seen ones
    live = train.copy()
    live[:, 1] = np.r_[np.zeros(300), np.ones(700)]
    live[:, 2] = np.where(live[:, 2] == 1, 1.5, live[:, 2])
    values = psi(ref, live)
    assert values["flag"] > PSI_ALERT
    assert values["count"] > PSI_ALERT


def test_an_all_missing_training_input_works() -> None:
    ref = reference_distribution(np.full((10, 1), np.nan), ["x"])
    assert ref.edges == ((),)
    assert ref.expected == ((0.0, 1.0),)
    assert psi(ref, np.full((5, 1), np.nan))["x"] == 0.0
    assert psi(ref, np.zeros((5, 1)))["x"] > PSI_ALERT


def test_psi_by_hand() -> None:
    ref = PsiReference(names=("x",), edges=((0.0,),), expected=((0.5, 0.5, 0.0),), bins=2)
    x = np.array([[-1.0], [1.0], [2.0], [3.0]])  # shares 0.25, 0.75, 0
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert psi(ref, x)["x"] == pytest.approx(expected)
    # an empty expected bucket is floored at EPSILON
    x2 = np.array([[-1.0], [1.0], [np.nan], [np.nan]])  # shares 0.25, 0.25, 0.5
    expected2 = 2 * (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.5 - EPSILON) * math.log(0.5 / EPSILON)
    assert psi(ref, x2)["x"] == pytest.approx(expected2)


def test_round_trip_through_json() -> None:
    train = sample(0, n=500)
    train[::7, 1] = np.nan
    ref = reference_distribution(np.column_stack([train, np.full(500, 1.0)]), [*NAMES, "c"])
    text = json.dumps(ref.to_dict(), allow_nan=False)
    back = PsiReference.from_dict(json.loads(text))
    assert back == ref
    live = np.column_stack([sample(5, n=300), np.ones(300)])
    assert psi(back, live) == psi(ref, live)


def test_levels() -> None:
    assert (PSI_WARN, PSI_ALERT) == (0.1, 0.25)
    assert psi_level(0.0) == "stable"
    assert psi_level(0.0999) == "stable"
    assert psi_level(0.1) == "warn"
    assert psi_level(0.2499) == "warn"
    assert psi_level(0.25) == "alert"
    with pytest.raises(ValueError, match="NaN"):
        psi_level(math.nan)


def test_bad_input() -> None:
    ref = reference_distribution(sample(0, n=100), NAMES)
    with pytest.raises(ValueError, match="3 inputs, the data 2 columns"):
        psi(ref, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="2-D"):
        psi(ref, np.zeros(5))
    with pytest.raises(ValueError, match="at least one row"):
        psi(ref, np.zeros((0, 3)))
    with pytest.raises(ValueError, match="2 inputs, the data 3 columns"):
        reference_distribution(sample(0, n=100), ["a", "b"])
    with pytest.raises(ValueError, match="bins"):
        reference_distribution(sample(0, n=100), NAMES, bins=0)
    with pytest.raises(ValueError, match="not a PSI reference"):
        PsiReference.from_dict({"names": ["x"]})
    with pytest.raises(ValueError, match="sum to 1"):
        PsiReference(names=("x",), edges=((0.0,),), expected=((0.5, 0.4, 0.0),), bins=2)
    with pytest.raises(ValueError, match="increasing"):
        PsiReference(names=("x",), edges=((1.0, 0.0),), expected=((0.5, 0.5, 0.0, 0.0),), bins=3)


# ---- properties --------------------------------------------------------------------------------
values = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from([0.0, 1.0, -1.0, math.nan, math.inf, -math.inf]),
)
matrices = hnp.arrays(np.float64, st.tuples(st.integers(1, 60), st.integers(1, 3)), elements=values)


@settings(max_examples=150, deadline=None)
@given(train=matrices, bins=st.integers(1, 12), data=st.data())
def test_psi_is_non_negative_and_zero_on_the_training_data(
    train: np.ndarray, bins: int, data: st.DataObject
) -> None:
    names = [f"x{j}" for j in range(train.shape[1])]
    ref = reference_distribution(train, names, bins=bins)
    for shares in ref.expected:
        assert math.isclose(sum(shares), 1.0)
    assert all(v == 0.0 for v in psi(ref, train).values())
    other = data.draw(
        hnp.arrays(
            np.float64, st.tuples(st.integers(1, 60), st.just(train.shape[1])), elements=values
        )
    )
    assert all(v >= 0.0 and math.isfinite(v) for v in psi(ref, other).values())
    assert PsiReference.from_dict(json.loads(json.dumps(ref.to_dict(), allow_nan=False))) == ref
