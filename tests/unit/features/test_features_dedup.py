"""Deduplication on (symbol, exchange, trade_id): first seen wins, hash collisions do not drop."""

from __future__ import annotations

import numpy as np

from signalstack.features.trades import duplicate_mask


def test_first_seen_wins_within_and_across_batches():
    ident = np.array([1, 2, 1, 3, 2], dtype=np.int64)
    keys = (
        np.array([0, 0, 0, 0, 0]),
        np.array([4, 4, 4, 4, 4]),
        np.array(["a", "b", "a", "c", "b"], dtype=object),
    )
    assert duplicate_mask(ident, keys).tolist() == [False, False, True, False, True]
    prior = (np.array([0]), np.array([4]), np.array(["c"], dtype=object))
    got = duplicate_mask(ident, keys, np.array([3], dtype=np.int64), prior)
    assert got.tolist() == [False, False, True, True, True]


def test_hash_collision_is_not_a_duplicate():
    ident = np.array([7, 7, 7], dtype=np.int64)  # forced collision
    keys = (
        np.array([0, 0, 1]),
        np.array([4, 5, 4]),
        np.array(["x", "x", "x"], dtype=object),
    )
    assert duplicate_mask(ident, keys).tolist() == [False, False, False]
