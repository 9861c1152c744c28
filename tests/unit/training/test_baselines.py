"""Baselines (training/baselines.py): class frequencies, seeded draws, the last label known at T
(point in time), and the z-score anomaly rule."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalstack.training.baselines import (
    majority,
    persistence,
    stratified_random,
    zscore_scores,
)

H = pd.Timedelta(minutes=5)
OPEN = pd.Timestamp("2024-03-05 14:30", tz="UTC")


def label_frame(seed: int = 0, minutes: int = 40, na_share: float = 0.2) -> pd.DataFrame:
    """Two symbols × two sessions of minute rows, labels random (some <NA>), end = ts + 5 min;
    ordered by (symbol, ts) like a training frame."""
    rng = np.random.default_rng(seed)
    parts = []
    for symbol in ("AAA", "BBB"):
        for day in (0, 1):
            session = OPEN + pd.Timedelta(days=day)
            ts = session + pd.to_timedelta(np.arange(1, minutes + 1), unit="min")
            codes = rng.integers(0, 3, size=minutes)
            labels = pd.array(codes, dtype="Int8")
            labels[rng.random(minutes) < na_share] = pd.NA
            parts.append(
                pd.DataFrame(
                    {
                        "symbol": symbol,
                        "ts": ts,
                        "session": session,
                        "regime": labels,
                        "regime_end": ts + H,
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


def persistence_by_loop(frame: pd.DataFrame, rows: np.ndarray, k: int = 3) -> np.ndarray:
    """The definition, one row at a time (the oracle)."""
    out = np.full((rows.size, k), 1.0 / k)
    for out_i, i in enumerate(rows):
        r = frame.iloc[i]
        same = frame[
            (frame["symbol"] == r["symbol"])
            & (frame["session"] == r["session"])
            & (frame["regime_end"] <= r["ts"])
            & frame["regime"].notna()
        ]
        if len(same):
            last = same.sort_values(["regime_end", "ts"]).iloc[-1]
            out[out_i] = np.eye(k)[int(last["regime"])]
    return out


def run(frame: pd.DataFrame, rows: np.ndarray, **kw: object) -> np.ndarray:
    return persistence(frame, rows, "regime", "regime_end", **kw)  # type: ignore[arg-type]


# ---- majority / stratified ---------------------------------------------------------------------
def test_majority_is_the_training_prior() -> None:
    p = majority([0, 2, 2, 2], 5)
    assert p.shape == (5, 3)
    np.testing.assert_allclose(p, np.tile([0.25, 0.0, 0.75], (5, 1)))
    assert (p.argmax(axis=1) == 2).all()


def test_majority_pads_classes_absent_from_training() -> None:
    p = majority([1, 1], 2, n_classes=4)
    np.testing.assert_array_equal(p, [[0, 1, 0, 0], [0, 1, 0, 0]])


def test_stratified_random_is_seeded_one_hot_draws_of_the_training_distribution() -> None:
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    p = stratified_random(y, 20_000, seed=3)
    assert set(np.unique(p)) == {0.0, 1.0}
    np.testing.assert_array_equal(p, stratified_random(y, 20_000, seed=3))
    assert not np.array_equal(p, stratified_random(y, 20_000, seed=4))
    np.testing.assert_allclose(p.mean(axis=0), [0.6, 0.3, 0.1], atol=0.015)
    q = stratified_random([2, 2, 0], 50, n_classes=3, seed=0)
    assert (q[:, 1] == 0).all()  # a class absent from training is never drawn


def test_dummy_baselines_reject_bad_labels() -> None:
    with pytest.raises(ValueError, match="at least one"):
        majority([], 3)
    with pytest.raises(ValueError, match="codes in 0"):
        stratified_random([0, 3], 3)
    with pytest.raises(ValueError, match="missing"):
        majority(pd.array([0, None], dtype="Int8"), 3)


# ---- persistence -------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_persistence_matches_the_definition(seed: int) -> None:
    frame = label_frame(seed)
    rows = np.random.default_rng(seed).permutation(len(frame))[: len(frame) // 2]
    np.testing.assert_array_equal(run(frame, rows), persistence_by_loop(frame, rows))


@st.composite
def ragged_frames(draw: st.DrawFn) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows in any order, several symbols and sessions, per-row horizons (ties of ``end``
    included), missing labels and sessions."""
    n = draw(st.integers(1, 40))
    minute = st.integers(0, 30)
    ts = [draw(minute) for _ in range(n)]
    frame = pd.DataFrame(
        {
            "symbol": [draw(st.sampled_from(["A", "B"])) for _ in range(n)],
            "session": [draw(st.sampled_from([0, 1, None])) for _ in range(n)],
            "ts": OPEN + pd.to_timedelta(ts, unit="min"),
            "regime": pd.array([draw(st.sampled_from([0, 1, 2, None])) for _ in range(n)], "Int8"),
            "regime_end": OPEN + pd.to_timedelta([t + draw(st.integers(0, 6)) for t in ts], "min"),
        }
    )
    frame["session"] = OPEN + pd.to_timedelta(frame["session"], unit="D")
    frame = frame.drop_duplicates(["symbol", "ts"], ignore_index=True)
    rows = np.asarray(draw(st.lists(st.integers(0, len(frame) - 1), max_size=20)), np.int64)
    return frame, rows


@settings(max_examples=80, deadline=None)
@given(case=ragged_frames())
def test_persistence_matches_the_definition_on_any_frame(
    case: tuple[pd.DataFrame, np.ndarray],
) -> None:
    frame, rows = case
    np.testing.assert_array_equal(run(frame, rows), persistence_by_loop(frame, rows))


def test_persistence_is_point_in_time() -> None:
    frame = label_frame(seed=7, na_share=0.0)
    i = 25  # AAA, session 0, T = open + 26 min: labels with end <= T are those of ts <= T - 5
    t = pd.Timestamp(frame["ts"].iloc[i])
    before = run(frame, np.array([i]))
    resolved = (frame["symbol"] == "AAA") & (frame["session"] == OPEN) & (frame["regime_end"] <= t)
    last = frame.index[resolved][-1]
    assert frame.loc[last, "ts"] == t - H
    np.testing.assert_array_equal(before[0], np.eye(3)[int(frame.loc[last, "regime"])])

    # every label not yet resolved at T (its window ends after T) changed: nothing moves
    future = frame.copy()
    later = future["regime_end"] > t
    future.loc[later, "regime"] = (future.loc[later, "regime"] + 1) % 3
    np.testing.assert_array_equal(run(future, np.array([i])), before)

    # the last resolved one changed: the prediction follows it
    past = frame.copy()
    past.loc[last, "regime"] = (past.loc[last, "regime"] + 1) % 3
    np.testing.assert_array_equal(
        run(past, np.array([i]))[0], np.eye(3)[int(past.loc[last, "regime"])]
    )


def test_persistence_never_crosses_sessions_or_symbols() -> None:
    frame = label_frame(seed=3, na_share=0.0)
    # the first 5 minutes of a session have no resolved label of their own: fallback, although
    # the previous session and the other symbol have plenty
    first = frame.index[
        (frame["symbol"] == "BBB") & (frame["session"] == OPEN + pd.Timedelta(days=1))
    ]
    rows = np.asarray(first[:5])
    np.testing.assert_array_equal(run(frame, rows), np.full((5, 3), 1 / 3))
    fb = np.array([0.2, 0.5, 0.3])
    np.testing.assert_array_equal(run(frame, rows, fallback=fb), np.tile(fb, (5, 1)))
    # the sixth has: the label of the session's first row
    sixth = run(frame, np.asarray(first[5:6]))
    np.testing.assert_array_equal(sixth[0], np.eye(3)[int(frame.loc[first[0], "regime"])])


def test_persistence_skips_missing_labels() -> None:
    frame = label_frame(seed=4, na_share=0.0)
    i = 20
    t = frame.loc[i, "ts"]
    mask = (frame.index < i) & (frame["regime_end"] <= t)
    idx = frame.index[mask]
    frame.loc[idx[-1], "regime"] = pd.NA
    frame.loc[idx[-2], "regime"] = 2
    np.testing.assert_array_equal(run(frame, np.array([i]))[0], [0, 0, 1])


def test_persistence_accepts_int_ns_times_and_empty_rows() -> None:
    frame = label_frame(seed=5)
    as_ns = frame.assign(
        ts=frame["ts"].astype("int64"),
        session=frame["session"].astype("int64"),
        regime_end=frame["regime_end"].astype("int64"),
    )
    rows = np.arange(len(frame))
    np.testing.assert_array_equal(run(as_ns, rows), run(frame, rows))
    assert run(frame, np.array([], dtype=np.int64)).shape == (0, 3)


def test_persistence_rejects_bad_input() -> None:
    frame = label_frame()
    with pytest.raises(ValueError, match="columns"):
        run(frame.drop(columns="session"), np.array([0]))
    with pytest.raises(ValueError, match="out of range"):
        run(frame, np.array([len(frame)]))
    with pytest.raises(ValueError, match="fallback"):
        run(frame, np.array([0]), fallback=[0.5, 0.5])
    bad = frame.assign(regime=pd.array([5] * len(frame), dtype="Int8"))
    with pytest.raises(ValueError, match="codes in 0"):
        run(bad, np.array([0]))


# ---- every classifier baseline returns probability rows ----------------------------------------
BASELINES: dict[str, Callable[[], np.ndarray]] = {
    "majority": lambda: majority([0, 1, 1, 2, 2, 2], 7),
    "majority_absent_class": lambda: majority([2, 2], 7),
    "stratified": lambda: stratified_random([0, 1, 1, 2], 50, seed=1),
    "persistence": lambda: run(label_frame(2), np.arange(160)),
    "persistence_fallback": lambda: run(label_frame(2), np.arange(160), fallback=[0.6, 0.4, 0.0]),
}


@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_rows_are_probabilities(name: str) -> None:
    p = BASELINES[name]()
    assert p.ndim == 2
    assert p.shape[1] == 3
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0)


# ---- z-score anomaly rule ----------------------------------------------------------------------
def test_zscore_by_hand_per_symbol() -> None:
    x_train = np.array([[1.0, 10.0], [2.0, 10.0], [3.0, 10.0], [0.0, 0.0], [10.0, 20.0]])
    sym_train = ["AAA", "AAA", "AAA", "BBB", "BBB"]
    x_test = np.array([[4.0, 10.0], [5.0, 10.0]])
    s = zscore_scores(x_train, sym_train, x_test, ["AAA", "BBB"])
    # AAA col 0: mean 2, std sqrt(2/3) → |z| = 2 / 0.8165; col 1 has no spread for AAA: pooled
    # (mean 10, std sqrt(40)) → 0; BBB: mean (5, 10), std (5, 10) → max(0, 0) = 0
    assert s[0] == pytest.approx(2 / np.sqrt(2 / 3))
    assert s[1] == pytest.approx(0.0)
    # AAA col 1 = 30 uses the pooled statistics: |30 − 10| / sqrt(40)
    s2 = zscore_scores(x_train, sym_train, np.array([[2.0, 30.0]]), ["AAA"])
    assert s2[0] == pytest.approx(20 / np.sqrt(40))


def test_zscore_unseen_symbol_nan_and_constant_columns() -> None:
    x_train = np.array([[1.0, 5.0], [3.0, 5.0], [np.nan, 5.0]])
    s = zscore_scores(x_train, ["A", "A", "A"], np.array([[5.0, 5.0], [np.nan, 9.0]]), ["Z", "A"])
    # unseen Z: pooled col 0 (mean 2, std 1) → 3; a column without spread anywhere → 0
    assert s[0] == pytest.approx(3.0)
    assert s[1] == 0.0  # NaN contributes 0, the constant column 0


def test_zscore_ranks_a_burst_first() -> None:
    rng = np.random.default_rng(0)
    x_train = rng.normal(size=(400, 2)) * [0.001, 0.3]
    x_test = rng.normal(size=(50, 2)) * [0.001, 0.3]
    x_test[17] = [0.0, 3.0]  # a volume burst: 10 sd
    syms = np.where(np.arange(400) % 2 == 0, "A", "B")
    s = zscore_scores(x_train, syms, x_test, ["A"] * 50)
    assert s.shape == (50,)
    assert int(np.argmax(s)) == 17


def test_zscore_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="columns"):
        zscore_scores(np.zeros((2, 2)), ["A", "A"], np.zeros((1, 3)), ["A"])
    with pytest.raises(ValueError, match="one symbol per row"):
        zscore_scores(np.zeros((2, 2)), ["A"], np.zeros((1, 2)), ["A"])
    with pytest.raises(ValueError, match="at least one training row"):
        zscore_scores(np.zeros((0, 2)), [], np.zeros((1, 2)), ["A"])
