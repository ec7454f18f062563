"""Plain numpy float64 reference of the metrics, one user at a time (shared by the tests)."""

from __future__ import annotations

import math

import numpy as np


def ranked_list(scores_row: np.ndarray, exclude_row: np.ndarray, k: int) -> list[int]:
    """The recommended items (excluded items removed), best first; ties: lower index first."""
    s = np.asarray(scores_row, np.float64).copy()
    s[exclude_row] = -np.inf
    order = np.argsort(-s, kind="stable")
    n_rankable = int((~exclude_row).sum())
    return [int(i) for i in order[: min(k, n_rankable)]]


def user_metrics(rec: list[int], relevant: set[int], k: int, convention: str) -> dict:
    """Accuracy metrics of one user with T = len(relevant) > 0 at cutoff k (<= n_items)."""
    rec = rec[:k]
    t = len(relevant)
    rel = [1.0 if i in relevant else 0.0 for i in rec]
    hits = sum(rel)
    dcg = sum(r / math.log2(j + 2) for j, r in enumerate(rel))
    n_ideal = t if convention == "recsys2019" else min(k, t)
    idcg = sum(1.0 / math.log2(j + 2) for j in range(n_ideal))
    first = next((j for j, r in enumerate(rel) if r), None)
    ap = 0.0
    seen = 0.0
    for j, r in enumerate(rel):
        if r:
            seen += 1
            ap += seen / (j + 1)
    out = {
        "Recall": hits / t,
        "NDCG": dcg / idcg,
        "MRR": 0.0 if first is None else 1.0 / (first + 1),
        "MAP": ap / min(k, t),
    }
    if convention == "recsys2019":
        out["Precision"] = hits / len(rec) if rec else 0.0
        out["HitRate"] = hits
    else:
        out["Precision"] = hits / k
        out["HitRate"] = 1.0 if hits > 0 else 0.0
    return out


def reference_evaluate(scores, truth, exclude, ks, convention, item_popularity=None):
    """(summary, per_user) like diffrec_jax.metrics.evaluate, computed with plain loops.

    truth, exclude: dense [U, I] bool numpy arrays.
    """
    n_users, n_items = scores.shape
    summary, per_user = {}, {}
    for k_req in ks:
        k = min(k_req, n_items)
        rows = {}
        lists = {}
        for u in range(n_users):
            relevant = set(np.flatnonzero(truth[u]).tolist())
            if not relevant:
                continue
            lists[u] = ranked_list(scores[u], exclude[u], k)
            rows[u] = user_metrics(lists[u], relevant, k, convention)
        for name in ("Recall", "Precision", "NDCG", "HitRate", "MRR", "MAP"):
            values = np.full(n_users, np.nan)
            for u, m in rows.items():
                values[u] = m[name]
            per_user[f"{name}@{k_req}"] = values
            total = sum(m[name] for m in rows.values())
            if convention == "diffrec":
                summary[f"{name}@{k_req}"] = total / n_users
            else:
                summary[f"{name}@{k_req}"] = total / len(rows) if rows else float("nan")
        recommended = [i for lst in lists.values() for i in lst]
        summary[f"Coverage@{k_req}"] = len(set(recommended)) / n_items
        counts = np.bincount(np.array(recommended, np.int64), minlength=n_items).astype(float)
        # Gini as the mean absolute difference over all pairs / (2 * mean).
        summary[f"Gini@{k_req}"] = np.abs(counts[:, None] - counts[None, :]).sum() / (
            2 * n_items**2 * counts.mean()
        )
        if item_popularity is not None:
            for name, f in (
                ("Novelty", lambda i: -math.log2(max(item_popularity[i], 1) / n_users)),
                ("AvgPop", lambda i: float(item_popularity[i])),
            ):
                values = np.full(n_users, np.nan)
                for u, lst in lists.items():
                    if lst:
                        values[u] = sum(f(i) for i in lst) / len(lst)
                per_user[f"{name}@{k_req}"] = values
                v = values[~np.isnan(values)]
                summary[f"{name}@{k_req}"] = float(v.mean()) if v.size else float("nan")
    return summary, per_user
