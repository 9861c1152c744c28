"""Errors of the feature library."""

from __future__ import annotations

from signalstack.errors import SignalStackError


class FeatureInputError(SignalStackError):
    """An input frame does not follow the trades/bars convention."""

    http_status = 400
