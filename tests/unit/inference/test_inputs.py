"""Model inputs (inference/inputs.py): input transforms, the fold scaler, session sequences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from signalstack.inference.inputs import (
    INPUT_SPECS,
    Scaler,
    input_spec,
    pad_row,
    sequences,
)

SPEC = input_spec(1)


def row(**over: float) -> dict[str, float]:
    base = {
        "vwap_5m": 101.0, "vwap_15m": 100.0, "realized_vol_5m": 0.002,
        "realized_vol_15m": 0.001, "price_momentum_1m": 0.003, "price_momentum_5m": 0.004,
        "volume_5m": 999.0, "volume_ratio": 1.5, "trade_count_1m": 9.0, "avg_trade_size_1m": 19.0,
    }  # fmt: skip
    return {**base, **over}


def test_input_values_of_feature_set_1() -> None:
    x = SPEC.transform(pd.DataFrame([row()]))
    got = dict(zip(SPEC.input_names, x[0], strict=True))
    assert got["vwap_gap"] == pytest.approx(np.log(1.01))
    assert got["log_volume_5m"] == pytest.approx(np.log(1000.0))
    assert got["log_trade_count_1m"] == pytest.approx(np.log(10.0))
    assert got["return_z_1m"] == pytest.approx(3.0)  # 0.003 / 0.001
    assert got["return_z_5m"] == pytest.approx(0.004 / (0.001 * np.sqrt(5)))
    assert got["vol_ratio_5m_15m"] == pytest.approx(2.0)
    assert x.shape == (1, len(SPEC.input_names))


def test_frame_and_array_give_the_same_inputs_and_columns_are_read_by_name() -> None:
    df = pd.DataFrame([row(), row(vwap_5m=99.0, volume_5m=5.0)])
    arr = df[list(SPEC.feature_columns)].to_numpy()
    shuffled = df[df.columns[::-1]].assign(symbol="AAA")
    np.testing.assert_array_equal(SPEC.transform(df), SPEC.transform(arr))
    np.testing.assert_array_equal(SPEC.transform(shuffled), SPEC.transform(arr))


def test_missing_zero_and_negative_values_become_nan_never_inf() -> None:
    df = pd.DataFrame(
        [row(realized_vol_15m=0.0), row(vwap_15m=0.0), row(volume_5m=-1.0), row(vwap_5m=np.nan)]
    )
    x = SPEC.transform(df)
    assert not np.isinf(x).any()
    i = {n: k for k, n in enumerate(SPEC.input_names)}
    assert np.isnan(x[0, i["return_z_1m"]]) and np.isnan(x[0, i["vol_ratio_5m_15m"]])
    assert np.isnan(x[1, i["vwap_gap"]])
    assert np.isnan(x[2, i["log_volume_5m"]])
    assert np.isnan(x[3, i["vwap_gap"]])
    # a nullable Float64 column with <NA> is missing too
    nullable = pd.DataFrame([row(), row()]).astype("Float64")
    nullable.loc[1, "volume_ratio"] = pd.NA
    assert np.isnan(SPEC.transform(nullable)[1, i["log_volume_ratio"]])


def test_transform_refuses_missing_columns_and_wrong_shapes() -> None:
    with pytest.raises(ValueError, match="feature columns missing: range_1m"):
        input_spec(2).transform(pd.DataFrame([row()]))
    with pytest.raises(ValueError, match=r"expected a \(n, 10\) array"):
        SPEC.transform(np.zeros((2, 9)))
    with pytest.raises(ValueError, match="unknown feature_set_version 9"):
        input_spec(9)


def test_every_spec_reads_distinct_columns_and_names_distinct_inputs() -> None:
    for v, spec in INPUT_SPECS.items():
        assert spec.feature_set_version == v
        assert len(set(spec.feature_columns)) == len(spec.feature_columns)
        assert len(set(spec.input_names)) == len(spec.input_names)


def test_scaler_fits_finite_values_and_marks_missing() -> None:
    x = np.array([[1.0, np.nan, 5.0], [3.0, np.nan, 5.0], [np.nan, np.nan, 5.0]])
    s = Scaler.fit(x)
    assert s.mean == (2.0, 0.0, 5.0)
    assert s.std == (1.0, 1.0, 1.0)  # no finite values: 0 and 1; constant: std 1
    out = s.transform(x)
    assert out.dtype == np.float32
    assert out.shape == (3, 6) == (3, s.width)
    np.testing.assert_array_equal(out[:, :3], [[-1, 0, 0], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(out[:, 3:], [[0, 1, 0], [0, 1, 0], [1, 1, 0]])
    plain = Scaler.fit(x, indicators=False)
    assert plain.width == 3
    np.testing.assert_array_equal(plain.transform(x), out[:, :3])


def test_scaler_dict_round_trip_and_refusals() -> None:
    s = Scaler.fit(np.random.default_rng(0).normal(size=(20, 4)), indicators=False)
    assert Scaler.from_dict(s.to_dict()) == s
    old = {"mean": [0.0, 1.0], "std": [1.0, 2.0]}  # written before the indicators flag
    assert Scaler.from_dict(old).indicators
    with pytest.raises(ValueError, match="differ in length"):
        Scaler.from_dict({"mean": [0.0], "std": [1.0, 1.0]})
    with pytest.raises(ValueError, match=r"expected \(n, 4\)"):
        s.transform(np.zeros((1, 3)))


def test_sequences_stay_within_their_group_and_pad_the_session_start() -> None:
    scaled = np.arange(1, 13, dtype=np.float32).reshape(6, 2)  # width 2: 1 value + 1 indicator
    groups = ["a", "a", "a", "b", "b", "c"]
    seq = sequences(scaled, groups, 3)
    assert seq.shape == (6, 3, 2)
    pad = pad_row(2)
    np.testing.assert_array_equal(pad, [0, 1])
    np.testing.assert_array_equal(seq[2], scaled[0:3])  # oldest first
    np.testing.assert_array_equal(seq[1], [pad, scaled[0], scaled[1]])
    np.testing.assert_array_equal(seq[3], [pad, pad, scaled[3]])  # b starts afresh
    np.testing.assert_array_equal(seq[4], [pad, scaled[3], scaled[4]])
    np.testing.assert_array_equal(seq[5], [pad, pad, scaled[5]])
    np.testing.assert_array_equal(sequences(scaled, groups, 1)[:, 0, :], scaled)


def test_sequences_refusals() -> None:
    with pytest.raises(ValueError, match="one group key per row"):
        sequences(np.zeros((3, 2), np.float32), [0, 0], 2)
    with pytest.raises(ValueError, match="at least 1"):
        sequences(np.zeros((3, 2), np.float32), [0, 0, 0], 0)


def test_padding_is_what_an_all_missing_row_scales_to() -> None:
    s = Scaler.fit(np.random.default_rng(1).normal(size=(10, 3)))
    np.testing.assert_array_equal(pad_row(s.width), s.transform(np.full((1, 3), np.nan))[0])


def test_padding_of_rows_scaled_without_indicators_is_the_missing_encoding() -> None:
    s = Scaler.fit(np.random.default_rng(1).normal(size=(10, 4)), indicators=False)
    scaled = s.transform(np.random.default_rng(2).normal(size=(2, 4)))
    seq = sequences(scaled, [0, 0], 3, pad=s.missing_row())
    np.testing.assert_array_equal(seq[0, 0], s.transform(np.full((1, 4), np.nan))[0])
    with pytest.raises(ValueError, match="padding row"):
        sequences(scaled, [0, 0], 3, pad=np.zeros(5, dtype=np.float32))


def test_feature_set_1_reads_exactly_the_stored_feature_columns() -> None:
    # inputs.py spells the columns out (importing signalstack.features loads pandas)
    from signalstack.features.columns import FEATURE_COLUMNS

    assert input_spec(1).feature_columns == FEATURE_COLUMNS
