"""The feature library (pure numpy/pandas, no I/O): eligibility, sessions, dedup, 1-minute bars
and the features of feature_set_version 1. One implementation for every consumer."""

from signalstack.features.columns import (
    BAR_COLUMNS,
    FEATURE_COLUMNS,
    FEATURE_FRAME_COLUMNS,
    FEATURE_SET_VERSION,
    TRADE_COLUMNS,
)
from signalstack.features.conditions import EligibilityRules, bundled_rules, load_response
from signalstack.features.definitions import DEFINITIONS
from signalstack.features.pipeline import bars_and_features
from signalstack.features.sessions import SessionIndex, session_index

__all__ = [
    "BAR_COLUMNS",
    "DEFINITIONS",
    "FEATURE_COLUMNS",
    "FEATURE_FRAME_COLUMNS",
    "FEATURE_SET_VERSION",
    "TRADE_COLUMNS",
    "EligibilityRules",
    "SessionIndex",
    "bars_and_features",
    "bundled_rules",
    "load_response",
    "session_index",
]
