"""Helpers of the live-prediction tests: a store holding the feature rows up to a cut (the rest
arrives through a feed), rows as a feed delivers them, the training-side expectation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tests.unit.serving.serving_helpers import Trained, session_keys

from signalstack.engines.kafka_io import feature_json
from signalstack.inference.bundle import Bundle
from signalstack.serving.feeds import FeatureRow, parse_feature_message
from signalstack.store.duckdb import DuckDBStore

__all__ = ["cut_time", "expected", "feed_rows", "store_upto"]


def cut_time(models: Trained) -> pd.Timestamp:
    """The middle of the last session: rows up to it are in the store, later ones stream."""
    frame = models.frame
    day = frame["ts"].dt.tz_convert("America/New_York").dt.date
    last = frame[day == day.max()]["ts"].sort_values()
    return pd.Timestamp(last.iloc[len(last) // 2])


def store_upto(path: Path, models: Trained, cut: pd.Timestamp) -> DuckDBStore:
    """A fresh store with the feature rows stamped at or before ``cut``."""
    store = DuckDBStore(str(path))
    store.migrate()
    store.write_features(models.frame[models.frame["ts"] <= cut])
    return store


def feed_rows(frame: pd.DataFrame) -> list[FeatureRow]:
    """The rows as a feed hands them out: each through its ``market.features`` value."""
    return [parse_feature_message(feature_json(r)) for r in frame.to_dict("records")]


def expected(bundle: Bundle, frame: pd.DataFrame) -> dict[tuple[str, int], np.ndarray]:
    """The training-side answer for every row of ``frame`` (all rows of each session, so the
    LSTM reads the session's rows up to each one), by (symbol, ts ns)."""
    full = frame.sort_values(["symbol", "ts"]).reset_index(drop=True)
    out = bundle.predict(full, groups=session_keys(full))
    return {
        (s, pd.Timestamp(t).value): np.atleast_1d(out[i])
        for i, (s, t) in enumerate(zip(full["symbol"], full["ts"], strict=True))
    }


def probs(values: Sequence[float] | float) -> np.ndarray:
    return np.atleast_1d(np.asarray(values, dtype=np.float64))
