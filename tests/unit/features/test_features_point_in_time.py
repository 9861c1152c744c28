"""Point-in-time property: appending trades at or after T never changes the bar or the features
stamped T (hypothesis)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalstack.features import FEATURE_COLUMNS, bars_and_features

OPEN = pd.Timestamp("2024-03-05 09:30", tz="America/New_York").value
NS_S = 1_000_000_000
CODES = [[], [], [], [37], [14], [2], [10], [15], [38], [14, 37], [12]]

trade_st = st.tuples(
    st.integers(0, 40 * 60 - 1),  # second of the session
    st.integers(0, 999_999_999),  # ns within the second
    st.floats(10.0, 20.0, allow_nan=False),
    st.integers(1, 500),
    st.sampled_from(range(len(CODES))),
    st.sampled_from(["AAA", "BBB"]),
)


def frame(trades: list[tuple[int, int, float, int, int, str]], start_seq: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": [t[5] for t in trades],
            "ts_event": np.array([OPEN + t[0] * NS_S + t[1] for t in trades], dtype=np.int64),
            "price": [round(t[2], 2) for t in trades],
            "size": [float(t[3]) for t in trades],
            "exchange": [4] * len(trades),
            "trade_id": [f"t{start_seq + i}" for i in range(len(trades))],
            "sequence": np.arange(start_seq, start_seq + len(trades), dtype=np.int64),
            "conditions": [list(CODES[t[4]]) for t in trades],
        }
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=st.lists(trade_st, min_size=1, max_size=120),
    after=st.lists(trade_st, min_size=1, max_size=60),
    cut_minute=st.integers(1, 40),
)
def test_appending_later_trades_never_changes_rows_at_or_before_t(before, after, cut_minute):
    cut = OPEN + cut_minute * 60 * NS_S  # a bar end T
    early = [t for t in before if OPEN + t[0] * NS_S + t[1] < cut]
    late = [t for t in after if OPEN + t[0] * NS_S + t[1] >= cut]
    base = frame(early, 0)
    more = pd.concat([base, frame(late, 10_000)], ignore_index=True)
    if base.empty:
        return
    bars0, f0 = bars_and_features(base)
    bars1, f1 = bars_and_features(more)
    t_cut = pd.Timestamp(cut, tz="UTC")
    keep1 = f1[f1["ts"] <= t_cut].reset_index(drop=True)
    pd.testing.assert_frame_equal(f0.reset_index(drop=True), keep1, check_exact=True)
    pd.testing.assert_frame_equal(
        bars0.reset_index(drop=True),
        bars1[bars1["ts"] <= t_cut].reset_index(drop=True),
        check_exact=True,
    )
    assert set(FEATURE_COLUMNS) <= set(f1.columns)
