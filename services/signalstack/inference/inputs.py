"""Model inputs: stored features → the numbers a model sees (pure numpy; docs/MODELS.md).

One definition serves training and serving, so a model is fed exactly what it was trained on:

1. :class:`InputSpec` (one per ``feature_set_version``) turns the stored feature columns into
   scale-free model inputs — a price level in dollars or a volume in shares means nothing across
   symbols, so VWAPs become a log gap and counts are log-scaled.
2. :class:`Scaler` (fitted on a training fold only) standardises each input and handles missing
   values explicitly: a missing input (NaN early in a session: a 15-minute window has no
   15 minutes yet) becomes 0 — the training mean — and a 0/1 *missing* indicator column beside
   it says so. The output has ``2 × len(inputs)`` columns: the standardised values, then the
   indicators (or the values alone, ``indicators=False``: the Isolation Forest). Never NaN.
3. :func:`sequences` stacks the last ``length`` scaled rows of the same (symbol, session) for the
   LSTM; steps before the session's first row are padding, encoded as "every input missing"
   (values 0, indicators 1) — the same encoding a missing value has, so no special token.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

F8 = npt.NDArray[np.float64]
F4 = npt.NDArray[np.float32]


def _log_ratio(a: F8, b: F8) -> F8:
    with np.errstate(divide="ignore", invalid="ignore"):
        out: F8 = np.log(a / b)
    return out


def _log1p(a: F8) -> F8:
    with np.errstate(divide="ignore", invalid="ignore"):
        out: F8 = np.log1p(np.where(a >= 0, a, np.nan))
    return out


@dataclass(frozen=True)
class InputSpec:
    """The model inputs of one feature set: names, the stored columns they read, the transform."""

    feature_set_version: int
    feature_columns: tuple[str, ...]
    input_names: tuple[str, ...]
    _transform: Callable[[Mapping[str, F8]], Mapping[str, F8]]

    def transform(self, features: Any) -> F8:
        """Stored feature values (a DataFrame with :attr:`feature_columns`, or an array with
        those columns in that order) → ``(n, len(input_names))`` float64, NaN where missing."""
        if hasattr(features, "columns"):
            missing = [c for c in self.feature_columns if c not in features.columns]
            if missing:
                raise ValueError(f"feature columns missing: {', '.join(missing)}")
            cols = {c: np.asarray(features[c], dtype=np.float64) for c in self.feature_columns}
        else:
            arr = np.asarray(features, dtype=np.float64)
            if arr.ndim != 2 or arr.shape[1] != len(self.feature_columns):
                raise ValueError(
                    f"expected a (n, {len(self.feature_columns)}) array of "
                    f"{', '.join(self.feature_columns)}; got shape {arr.shape}"
                )
            cols = {c: arr[:, i] for i, c in enumerate(self.feature_columns)}
        out = self._transform(cols)
        x = np.column_stack([np.asarray(out[n], dtype=np.float64) for n in self.input_names])
        x[~np.isfinite(x)] = np.nan  # ±inf (a zero price or volume) is missing, never a number
        return x


def _ratio(a: F8, b: F8) -> F8:
    with np.errstate(divide="ignore", invalid="ignore"):
        out: F8 = a / b
    return out


def _scale_free(f: Mapping[str, F8]) -> dict[str, F8]:
    """Moves in units of the symbol's own recent volatility (a 1-minute return of 3 sigmas means
    the same for a quiet and a wild stock), and the short-to-long volatility ratio."""
    rv15 = f["realized_vol_15m"]
    return {
        "return_z_1m": _ratio(f["price_momentum_1m"], rv15),
        "return_z_5m": _ratio(f["price_momentum_5m"], rv15 * np.sqrt(5.0)),
        "vol_ratio_5m_15m": _ratio(f["realized_vol_5m"], rv15),
    }


def _common(f: Mapping[str, F8]) -> dict[str, F8]:
    return {
        "vwap_gap": _log_ratio(f["vwap_5m"], f["vwap_15m"]),
        "realized_vol_5m": f["realized_vol_5m"],
        "realized_vol_15m": f["realized_vol_15m"],
        "price_momentum_1m": f["price_momentum_1m"],
        "price_momentum_5m": f["price_momentum_5m"],
        "log_volume_5m": _log1p(f["volume_5m"]),
        "log_volume_ratio": _log1p(f["volume_ratio"]),
    }


def _inputs_v1(f: Mapping[str, F8]) -> Mapping[str, F8]:
    return {
        **_common(f),
        "log_trade_count_1m": _log1p(f["trade_count_1m"]),
        "log_avg_trade_size_1m": _log1p(f["avg_trade_size_1m"]),
        **_scale_free(f),
    }


def _inputs_v2(f: Mapping[str, F8]) -> Mapping[str, F8]:
    return {**_common(f), "range_1m": f["range_1m"], **_scale_free(f)}


def _spec(
    version: int,
    feature_columns: tuple[str, ...],
    transform: Callable[[Mapping[str, F8]], Mapping[str, F8]],
) -> InputSpec:
    """The input names are the transform's keys, in its order (one list, never two)."""
    names = tuple(transform({c: np.zeros(0) for c in feature_columns}))
    return InputSpec(version, feature_columns, names, transform)


# The stored feature columns each set reads. Feature set 1's are features.columns.FEATURE_COLUMNS
# (spelled out: importing signalstack.features loads pandas, which the inference image avoids;
# a test keeps the two equal).
_SHARED = (
    "vwap_5m",
    "vwap_15m",
    "realized_vol_5m",
    "realized_vol_15m",
    "price_momentum_1m",
    "price_momentum_5m",
    "volume_5m",
    "volume_ratio",
)
INPUT_SPECS: Final[dict[int, InputSpec]] = {
    1: _spec(1, (*_SHARED, "trade_count_1m", "avg_trade_size_1m"), _inputs_v1),
    # feature set 2: features from 1-minute bars alone (yfinance history has no trades);
    # computed by signalstack.features.bar_features
    2: _spec(2, (*_SHARED, "range_1m"), _inputs_v2),
}


def input_spec(feature_set_version: int) -> InputSpec:
    try:
        return INPUT_SPECS[feature_set_version]
    except KeyError:
        known = ", ".join(map(str, sorted(INPUT_SPECS)))
        msg = f"unknown feature_set_version {feature_set_version} (known: {known})"
        raise ValueError(msg) from None


@dataclass(frozen=True)
class Scaler:
    """Standardisation fitted on a training fold, with explicit missing-value indicators."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    indicators: bool = True  # append a 0/1 missing indicator per input

    @classmethod
    def fit(cls, x: F8, *, indicators: bool = True) -> Scaler:
        """Mean and std of each column over its finite values (a column with none: 0 and 1).
        ``indicators=False``: the output is the standardised values alone (missing → 0), for a
        model that binary columns would mislead (an Isolation Forest isolates the rare rows with
        a missing value — the first minutes of every session — as anomalies)."""
        x = np.asarray(x, dtype=np.float64)
        finite = np.isfinite(x)
        n = finite.sum(axis=0)
        filled = np.where(finite, x, 0.0)
        mean = np.divide(filled.sum(axis=0), n, out=np.zeros(x.shape[1]), where=n > 0)
        var = np.divide(
            (np.where(finite, x - mean, 0.0) ** 2).sum(axis=0),
            n,
            out=np.ones(x.shape[1]),
            where=n > 0,
        )
        std = np.sqrt(var)
        std = np.where(std > 1e-12, std, 1.0)
        return cls(tuple(float(v) for v in mean), tuple(float(v) for v in std), indicators)

    @property
    def width(self) -> int:
        """Columns of the output: the values (and their missing indicators)."""
        return (2 if self.indicators else 1) * len(self.mean)

    def transform(self, x: F8) -> F4:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.mean):
            raise ValueError(f"expected (n, {len(self.mean)}) model inputs; got {x.shape}")
        missing = ~np.isfinite(x)
        z: F8 = (x - np.asarray(self.mean)) / np.asarray(self.std)
        z[missing] = 0.0
        if not self.indicators:
            return z.astype(np.float32)
        return np.concatenate([z, missing.astype(np.float64)], axis=1).astype(np.float32)

    def missing_row(self) -> F4:
        """The output for a row with every input missing: the padding of a sequence."""
        row: F4 = self.transform(np.full((1, len(self.mean)), np.nan))[0]
        return row

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "indicators": self.indicators}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Scaler:
        mean, std = tuple(map(float, d["mean"])), tuple(map(float, d["std"]))
        if len(mean) != len(std):
            raise ValueError("scaler mean and std differ in length")
        return cls(mean, std, bool(d.get("indicators", True)))


def pad_row(width: int) -> F4:
    """The padding step of a sequence: every input missing (values 0, indicators 1)."""
    half = width // 2
    return np.concatenate([np.zeros(half), np.ones(width - half)]).astype(np.float32)


def sequences(scaled: F4, groups: npt.ArrayLike, length: int, *, pad: F4 | None = None) -> F4:
    """For each row ``i``, the ``length`` scaled rows of its group ending at ``i`` (oldest
    first), left-padded with ``pad`` (default :func:`pad_row`, for rows with missing
    indicators; pass :meth:`Scaler.missing_row` for any scaler). ``scaled``: ``(n, width)``;
    ``groups``: one key per row — rows of a group must be contiguous and in time order (a frame
    ordered by symbol, ts with the session as the group). Returns ``(n, length, width)`` float32."""
    if length < 1:
        raise ValueError("sequence length must be at least 1")
    scaled = np.asarray(scaled, dtype=np.float32)
    n, width = scaled.shape
    g = np.asarray(groups)
    if len(g) != n:
        raise ValueError("one group key per row")
    # position of each row within its group run
    new = np.ones(n, dtype=bool)
    if n > 1:
        new[1:] = g[1:] != g[:-1]
    run_start = np.maximum.accumulate(np.where(new, np.arange(n), 0))
    pos = np.arange(n) - run_start
    fill = pad_row(width) if pad is None else np.asarray(pad, dtype=np.float32)
    if fill.shape != (width,):
        raise ValueError(f"the padding row has shape {fill.shape}, the rows ({width},)")
    out = np.broadcast_to(fill, (n, length, width)).copy()
    for k in range(length):  # step k holds row i - (length - 1 - k) when inside the group
        back = length - 1 - k
        ok = pos >= back
        out[ok, k, :] = scaled[np.flatnonzero(ok) - back]
    return out


__all__ = ["INPUT_SPECS", "InputSpec", "Scaler", "input_spec", "pad_row", "sequences"]
