"""Per-user accuracy metrics from a hits matrix, in float64 (definitions: see the table in
:mod:`diffrec_jax.metrics`)."""

from __future__ import annotations

import numpy as np

CONVENTIONS = ("recbole", "diffrec", "recsys2019")
ACCURACY_METRICS = ("Recall", "Precision", "NDCG", "HitRate", "MRR", "MAP")


def _cumulative_discount(n: int) -> np.ndarray:
    """[n + 1] float64: entry j is sum_{i=1..j} 1 / log2(i + 1) (the IDCG of j relevant items)."""
    out = np.zeros(n + 1)
    np.cumsum(1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64)), out=out[1:])
    return out


def accuracy_per_user(
    hits: np.ndarray, valid: np.ndarray, n_truth: np.ndarray, k: int, convention: str
) -> dict[str, np.ndarray]:
    """Accuracy metrics at cutoff k for every row.

    Args:
      hits: [N, >= k] bool, True where the recommended item at that position is relevant.
      valid: [N, >= k] bool, True where the position holds a recommendation (not an excluded
        filler); hits implies valid.
      n_truth: [N] int, T = number of relevant items of each row; must be > 0.
      k: the cutoff (already clipped to the catalogue size).
      convention: one of CONVENTIONS.

    Returns:
      {metric name: [N] float64} for ACCURACY_METRICS.
    """
    h = hits[:, :k].astype(np.float64)
    t = np.asarray(n_truth, np.float64)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    n_hits = h.sum(axis=1)
    dcg = h @ (1.0 / np.log2(ranks + 1.0))
    first = np.argmax(hits[:, :k], axis=1)
    mrr = np.where(n_hits > 0, 1.0 / (first + 1.0), 0.0)
    ap = (h * (np.cumsum(h, axis=1) / ranks)).sum(axis=1) / np.minimum(k, t)
    n_truth = np.asarray(n_truth, np.int64)
    if convention == "recsys2019":
        n_rec = valid[:, :k].sum(axis=1).astype(np.float64)
        precision = np.divide(n_hits, n_rec, out=np.zeros_like(n_hits), where=n_rec > 0)
        idcg = _cumulative_discount(int(n_truth.max(initial=0)))[n_truth]
        hit_rate = n_hits
    else:
        precision = n_hits / k
        idcg = _cumulative_discount(k)[np.minimum(n_truth, k)]
        hit_rate = (n_hits > 0).astype(np.float64)
    return {
        "Recall": n_hits / t,
        "Precision": precision,
        "NDCG": dcg / idcg,
        "HitRate": hit_rate,
        "MRR": mrr,
        "MAP": ap,
    }


def average(values: np.ndarray, evaluated: np.ndarray, convention: str, n_users: int) -> float:
    """The summary of one accuracy metric: mean over evaluated users, or for "diffrec" their sum
    divided by all `n_users`. With no evaluated user: NaN, or 0 for "diffrec" (n_users > 0)."""
    v = values[evaluated]
    if convention == "diffrec":
        return float(v.sum() / n_users) if n_users else float("nan")
    return float(v.mean()) if v.size else float("nan")
