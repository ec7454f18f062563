"""Beyond-accuracy metrics of top-K lists: coverage, Gini index, novelty, average popularity."""

from __future__ import annotations

import numpy as np


def recommendation_counts(items: np.ndarray, valid: np.ndarray, n_items: int) -> np.ndarray:
    """[n_items] int64: how many lists recommend each item.

    Args:
      items: [N, k] int item indices (rows = the evaluated users).
      valid: [N, k] bool, which positions are recommendations.
    """
    return np.bincount(items[valid].astype(np.int64), minlength=n_items).astype(np.int64)


def coverage(counts: np.ndarray) -> float:
    """Share of the catalogue recommended to at least one user."""
    return float(np.count_nonzero(counts) / counts.size)


def gini(counts: np.ndarray) -> float:
    """Gini index of the recommendation counts over ALL items (never-recommended items count
    as 0): sum_i (2i - n - 1) c_(i) / (n sum c), counts sorted ascending, i = 1..n. 0 for equal
    counts, (n - 1) / n when one item takes every recommendation; NaN when nothing is
    recommended."""
    c = np.sort(counts.astype(np.float64))
    n = c.size
    total = c.sum()
    if total == 0:
        return float("nan")
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(((2.0 * i - n - 1.0) * c).sum() / (n * total))


def self_information(item_popularity: np.ndarray, n_users: int) -> np.ndarray:
    """[n_items] float64 -log2(p_i), p_i = item_popularity[i] / n_users.

    Items with popularity 0 (never seen in training) get the value of an item seen once,
    log2(n_users): the largest finite self-information, instead of +inf.
    """
    pop = np.maximum(np.asarray(item_popularity, np.float64), 1.0)
    return -np.log2(pop / n_users)


def list_means(values: np.ndarray, items: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """[N] float64 mean of the per-item `values` over every row's valid recommendations; NaN
    for an empty list."""
    v = np.where(valid, values[np.where(valid, items, 0)], 0.0)
    n = valid.sum(axis=1)
    out = np.full(len(items), np.nan)
    np.divide(v.sum(axis=1), n, out=out, where=n > 0)
    return out
