"""Baselines a model must beat, computed in the same run on the same test rows (no I/O).

Each classifier baseline returns class probabilities ``(n_test, K)`` whose rows sum to 1; its
predicted class is the argmax, so :mod:`signalstack.training.metrics` scores it exactly like a
model.

- :func:`majority` — the training class frequencies for every test row (scikit-learn's
  ``DummyClassifier(strategy="prior")``): it always predicts the training majority class, and its
  log loss is that of the class prior. A class absent from training gets probability 0.
- :func:`stratified_random` — a one-hot random draw per test row from the training class
  distribution (``DummyClassifier(strategy="stratified")``), reproducible per seed: the score of
  a guess that knows the class balance and nothing else.
- :func:`persistence` — "the last label known at T": the class of the most recent row of the
  same symbol and session whose label window had ended by the decision time ``T`` (that label is
  resolved, hence known, at ``T``); the fallback row (default uniform) when there is none yet.
  It beats the others when labels are persistent (regimes last about an hour), so a model must
  read more than the recent past to beat it.
- :func:`zscore_scores` — the anomaly baseline, a z-score rule: per input column, the distance
  from the symbol's training mean in units of its training standard deviation; a row's score is
  the largest ``|z|`` over the columns (returns and volume: a price jump or a volume burst).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.dummy import DummyClassifier

from signalstack.training.metrics import class_codes

F8 = npt.NDArray[np.float64]


def _dummy(y_train: Any, n: int, n_classes: int, strategy: str, seed: int | None) -> F8:
    if n_classes < 2:
        raise ValueError("n_classes must be at least 2")
    if n < 0:
        raise ValueError("the number of test rows must be >= 0")
    y = class_codes(y_train, n_classes)
    if y.size == 0:
        raise ValueError("a baseline needs at least one labelled training row")
    model = DummyClassifier(strategy=strategy, random_state=seed).fit(np.zeros((y.size, 1)), y)
    out = np.zeros((n, n_classes), dtype=np.float64)
    if n:
        out[:, np.asarray(model.classes_, dtype=np.int64)] = model.predict_proba(np.zeros((n, 1)))
    return out


def majority(y_train: Any, n: int, n_classes: int = 3) -> F8:
    """``(n, n_classes)`` rows equal to the training class frequencies (argmax: the majority)."""
    return _dummy(y_train, n, n_classes, "prior", None)


def stratified_random(y_train: Any, n: int, n_classes: int = 3, seed: int = 0) -> F8:
    """``(n, n_classes)`` one-hot rows drawn from the training class distribution (per seed)."""
    return _dummy(y_train, n, n_classes, "stratified", seed)


def persistence(
    frame: pd.DataFrame,
    test_rows: Any,
    label_col: str,
    end_col: str,
    n_classes: int = 3,
    fallback: Any = None,
) -> F8:
    """The one-hot of the last label known at each test row's decision time.

    ``frame``: a training frame (columns ``symbol, session, ts``, ``label_col`` (Int8 codes with
    ``<NA>``) and ``end_col``, the label window's end ``T + h``); ``test_rows``: the positions
    (as for ``frame.iloc``) of the rows to predict. For a test row (symbol ``s``, session, ``T``)
    the candidates are all the rows of ``frame`` — training part, earlier test rows, any other —
    of the same symbol and session with a label and ``end <= T``: their label was resolved at or
    before ``T``. The one with the latest ``end`` (then the latest ``ts``) gives the class; with
    no candidate (the session's first minutes, an unlabelled stretch) the row is ``fallback``
    (a probability row of length ``n_classes``; default uniform).
    """
    if n_classes < 2:
        raise ValueError("n_classes must be at least 2")
    missing = {"symbol", "session", "ts", label_col, end_col} - set(frame.columns)
    if missing:
        raise ValueError(f"persistence needs the frame columns {sorted(missing)}")
    rows = np.asarray(test_rows, dtype=np.int64).reshape(-1)
    if rows.size and (rows.min() < -len(frame) or rows.max() >= len(frame)):
        raise ValueError("test row positions out of range of the frame")
    if fallback is None:
        fb = np.full(n_classes, 1.0 / n_classes)
    else:
        fb = np.asarray(fallback, dtype=np.float64)
        if fb.shape != (n_classes,) or not np.isfinite(fb).all() or (fb < 0).any():
            raise ValueError(f"fallback must be {n_classes} non-negative probabilities")
        if not np.isclose(fb.sum(), 1.0):
            raise ValueError("fallback probabilities must sum to 1")
    out = np.tile(fb, (rows.size, 1))
    if rows.size == 0:
        return out

    labels = frame[label_col].to_numpy(dtype=np.float64, na_value=np.nan)
    known = ~np.isnan(labels) & frame["session"].notna().to_numpy()
    known &= frame[end_col].notna().to_numpy()
    codes = class_codes(labels[known], n_classes)
    right = pd.DataFrame(
        {
            "symbol": frame["symbol"].to_numpy()[known],
            "session": _ns(frame["session"])[known],
            "end": _ns(frame[end_col])[known],
            "ts_j": _ns(frame["ts"])[known],
            "code": codes,
        }
    ).sort_values(["end", "ts_j"], kind="stable")
    test = frame.iloc[rows]
    ok = test["session"].notna().to_numpy() & test["ts"].notna().to_numpy()
    left = pd.DataFrame(
        {
            "symbol": test["symbol"].to_numpy()[ok],
            "session": _ns(test["session"])[ok],
            "t": _ns(test["ts"])[ok],
            "pos": np.flatnonzero(ok),
        }
    ).sort_values("t", kind="stable")
    if left.empty or right.empty:
        return out
    # the newest candidate with end <= T, by symbol and session (ties on end: the last in the
    # right frame's order, i.e. the latest ts)
    matched = pd.merge_asof(
        left,
        right[["symbol", "session", "end", "code"]],
        left_on="t",
        right_on="end",
        by=["symbol", "session"],
        direction="backward",
        allow_exact_matches=True,
    )
    hit = matched["code"].notna().to_numpy()
    pos = matched["pos"].to_numpy()[hit]
    code = matched["code"].to_numpy()[hit].astype(np.int64)
    out[pos] = 0.0
    out[pos, code] = 1.0
    return out


def _ns(values: Any) -> npt.NDArray[np.int64]:
    """Datetimes (tz-aware or naive UTC) or int ns as int64 ns (NaT rows are filtered before)."""
    s = pd.Series(values)
    if pd.api.types.is_integer_dtype(s.dtype):
        return s.to_numpy(dtype=np.int64)
    t = pd.to_datetime(s, utc=True).dt.tz_localize(None)
    return t.to_numpy(dtype="datetime64[ns]").view(np.int64)


def zscore_scores(x_train: Any, symbols_train: Any, x_test: Any, symbols_test: Any) -> F8:
    """Anomaly scores ``(n_test,)``: the largest ``|z|`` over the columns of ``x_test``.

    ``z = (x − mean) / std`` with the mean and standard deviation (ddof 0) of that column over
    the training rows of the row's symbol, NaN ignored. Where the symbol has no training row, or
    the column has no spread for it (std 0 or undefined), the statistics pooled over all
    training rows are used instead; a column without spread in the pooled data either, and a
    NaN value, contribute 0. Higher = more anomalous.
    """
    xtr = _matrix(x_train, "x_train")
    xte = _matrix(x_test, "x_test")
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(f"x_train has {xtr.shape[1]} columns, x_test {xte.shape[1]}")
    str_ = np.asarray(symbols_train, dtype=object).reshape(-1)
    ste = np.asarray(symbols_test, dtype=object).reshape(-1)
    if str_.size != xtr.shape[0] or ste.size != xte.shape[0]:
        raise ValueError("one symbol per row is needed for x_train and x_test")
    if xte.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    if xtr.shape[0] == 0:
        raise ValueError("the z-score baseline needs at least one training row")

    cats, codes = np.unique(str_, return_inverse=True)
    g = cats.size
    mean_g, std_g = _group_stats(xtr, codes.reshape(-1), g)
    pooled_mean, pooled_std = _group_stats(xtr, np.zeros(xtr.shape[0], dtype=np.intp), 1)
    # test rows → their symbol's group, or g (a "group" that is only the pooled statistics)
    idx = np.searchsorted(cats, ste)
    idx_c = np.minimum(idx, g - 1)
    seen = (idx < g) & (cats[idx_c] == ste)
    grp = np.where(seen, idx_c, g)
    mean = np.vstack([mean_g, pooled_mean])[grp]
    std = np.vstack([std_g, pooled_std])[grp]
    use_pooled = ~(np.isfinite(std) & (std > 0))
    mean = np.where(use_pooled, pooled_mean, mean)
    std = np.where(use_pooled, pooled_std, std)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(xte - mean) / std
    z[~(np.isfinite(std) & (std > 0)) | ~np.isfinite(z)] = 0.0
    return np.asarray(z.max(axis=1), dtype=np.float64)


def _matrix(x: Any, name: str) -> F8:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"{name} must be a 2-D array with at least one column, got {a.shape}")
    return a


def _group_stats(x: F8, codes: npt.NDArray[np.intp], groups: int) -> tuple[F8, F8]:
    """NaN-ignoring per-group mean and std (ddof 0) of each column: ``(groups, d)`` each, NaN
    where a group has no value in a column."""
    ok = np.isfinite(x)
    v = np.where(ok, x, 0.0)
    count = np.zeros((groups, x.shape[1]))
    total = np.zeros((groups, x.shape[1]))
    np.add.at(count, codes, ok.astype(np.float64))
    np.add.at(total, codes, v)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = total / count
    dev = np.where(ok, x - mean[codes], 0.0)  # two passes: no catastrophic cancellation
    sq = np.zeros((groups, x.shape[1]))
    np.add.at(sq, codes, dev * dev)
    with np.errstate(divide="ignore", invalid="ignore"):
        std = np.sqrt(sq / count)
    return mean, std
