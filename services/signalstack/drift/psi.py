"""Population stability index (PSI): how far a batch of model inputs has drifted from training.

Pure numpy (imported by the inference image). The training job stores a
:class:`PsiReference` with each model (``reference_distribution`` of the training rows' model
inputs); the drift job compares live inputs against it with :func:`psi`.

Buckets, per input: with cut points ``c_1 < … < c_m`` the value buckets are
``(−∞, c_1), [c_1, c_2), …, [c_m, ∞)``, and one more, the last, holds the missing values (NaN or
±inf): a change in the missing rate is drift too. The cut points are the training data's
``1/bins … (bins−1)/bins`` quantiles (values observed in the data), deduplicated. An input with
at most ``bins`` distinct values (a flag, a count, a constant) is cut at each value ``v`` and just
above it instead, so each training value has a bucket of its own and a value never seen in
training (between two of them, below the least or above the greatest) lands in a bucket
expected empty: a constant that changes is drift. The reference keeps each bucket's share of
the training rows (``expected``, the missing bucket included, summing to 1).

``PSI = Σ_b (a_b − e_b) · ln(a_b / e_b)`` over the buckets, with ``a_b`` the share of the new
rows and ``e_b`` the expected share, both floored at ``EPSILON = 1e-4`` first (the usual
convention: an empty bucket would otherwise make the index infinite; the floored shares are not
renormalised). PSI is 0 for identical shares and grows with the divergence (it is the symmetric
Kullback–Leibler divergence of the two bucket distributions). Conventional reading
(:func:`psi_level`): below ``PSI_WARN = 0.1`` stable; from 0.1 to below ``PSI_ALERT = 0.25`` a
moderate shift worth a look; from 0.25 a significant shift (retrain or investigate).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

PSI_WARN: Final = 0.1
PSI_ALERT: Final = 0.25
EPSILON: Final = 1e-4

PsiLevel = Literal["stable", "warn", "alert"]
F8 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PsiReference:
    """Per input: its name, interior cut points and expected bucket shares (last: missing)."""

    names: tuple[str, ...]
    edges: tuple[tuple[float, ...], ...]
    expected: tuple[tuple[float, ...], ...]
    bins: int

    def __post_init__(self) -> None:
        if not (len(self.names) == len(self.edges) == len(self.expected)):
            raise ValueError("a PSI reference needs names, edges and expected of one length")
        if len(set(self.names)) != len(self.names):
            raise ValueError("PSI reference input names must be distinct")
        if self.bins < 1:
            raise ValueError("bins must be at least 1")
        for name, cuts, shares in zip(self.names, self.edges, self.expected, strict=True):
            c = np.asarray(cuts, dtype=np.float64)
            if not np.isfinite(c).all() or (np.diff(c) <= 0).any():
                raise ValueError(f"{name}: cut points must be finite and strictly increasing")
            if len(shares) != len(cuts) + 2:
                raise ValueError(f"{name}: {len(cuts)} cut points need {len(cuts) + 2} shares")
            e = np.asarray(shares, dtype=np.float64)
            if not np.isfinite(e).all() or (e < 0).any() or not math.isclose(e.sum(), 1.0):
                raise ValueError(f"{name}: expected shares must be >= 0 and sum to 1")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (lists of floats, all finite)."""
        return {
            "names": list(self.names),
            "edges": [list(c) for c in self.edges],
            "expected": [list(e) for e in self.expected],
            "bins": self.bins,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PsiReference:
        try:
            return cls(
                names=tuple(str(n) for n in d["names"]),
                edges=tuple(tuple(float(v) for v in c) for c in d["edges"]),
                expected=tuple(tuple(float(v) for v in e) for e in d["expected"]),
                bins=int(d["bins"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a PSI reference: {exc!r}") from exc


def _matrix(x: Any, d: int | None = None) -> F8:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1 and d == 1:
        a = a.reshape(-1, 1)
    if a.ndim != 2:
        raise ValueError(f"PSI needs a 2-D array (rows × inputs), got shape {a.shape}")
    if d is not None and a.shape[1] != d:
        raise ValueError(f"PSI reference has {d} inputs, the data {a.shape[1]} columns")
    if a.shape[0] == 0:
        raise ValueError("PSI needs at least one row")
    return a


def _shares(column: F8, cuts: F8) -> F8:
    """Each bucket's share of ``column``: the value buckets, then the missing one."""
    finite = np.isfinite(column)
    counts = np.bincount(
        np.searchsorted(cuts, column[finite], side="right"), minlength=cuts.size + 1
    )
    out = np.append(counts, column.size - finite.sum()).astype(np.float64)
    return out / column.size


def reference_distribution(x: Any, names: Sequence[str], bins: int = 10) -> PsiReference:
    """The reference of the rows ``x`` (n, d), one column per name (see the module docstring)."""
    if bins < 1:
        raise ValueError("bins must be at least 1")
    a = _matrix(x, len(names))
    qs = np.arange(1, bins) / bins
    edges: list[tuple[float, ...]] = []
    expected: list[tuple[float, ...]] = []
    for j in range(a.shape[1]):
        col = a[:, j]
        finite = col[np.isfinite(col)]
        distinct = np.unique(finite)
        if 0 < distinct.size <= bins:  # few values: one bucket per value, the gaps between
            cuts = np.unique(np.concatenate([distinct, np.nextafter(distinct, np.inf)]))
        elif qs.size and finite.size:
            cuts = np.unique(np.quantile(finite, qs, method="inverted_cdf"))
        else:
            cuts = np.zeros(0)
        edges.append(tuple(float(c) for c in cuts))
        expected.append(tuple(float(s) for s in _shares(col, cuts)))
    return PsiReference(tuple(names), tuple(edges), tuple(expected), int(bins))


def psi(reference: PsiReference, x: Any) -> dict[str, float]:
    """PSI of each input of the rows ``x`` (n, d), columns in ``reference.names`` order, against
    the reference. Raises ValueError when the column count differs or ``x`` has no row."""
    a = _matrix(x, len(reference.names))
    out: dict[str, float] = {}
    for j, name in enumerate(reference.names):
        cuts = np.asarray(reference.edges[j], dtype=np.float64)
        actual = np.maximum(_shares(a[:, j], cuts), EPSILON)
        expected = np.maximum(np.asarray(reference.expected[j], dtype=np.float64), EPSILON)
        out[name] = float(np.sum((actual - expected) * np.log(actual / expected)))
    return out


def psi_level(value: float) -> PsiLevel:
    """``stable`` below :data:`PSI_WARN`, ``warn`` below :data:`PSI_ALERT`, else ``alert``."""
    if math.isnan(value):
        raise ValueError("PSI is NaN")
    if value < PSI_WARN:
        return "stable"
    if value < PSI_ALERT:
        return "warn"
    return "alert"
