"""`evaluate` (score matrix -> metrics) and `evaluate_top_items` (top-K lists -> metrics)."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from diffrec_jax.errors import ConfigError, DataError, DiffrecError
from diffrec_jax.metrics import _beyond, _ranking, _topk

BEYOND_METRICS = ("Coverage", "Gini", "Novelty", "AvgPop")


class EvalResult(NamedTuple):
    """Metrics of one ranking evaluation.

    Attributes:
      summary: {"Recall@20": value, ...} float for every metric and every requested K (keys use
        the requested K, also when it was clipped to the catalogue size).
      per_user: {"Recall@20": [n_users] float64, ...} per-user values of the accuracy metrics
        and of Novelty/AvgPop (not Coverage/Gini, which are global); NaN for users without truth.
      n_users_evaluated: number of users with at least one relevant item.
      convention: the metric convention used (see :mod:`diffrec_jax.metrics`).
      top_items: [n_users, Kmax] int32 recommended items, best first, Kmax = min(max(ks),
        n_items); -1 at invalid positions (excluded fillers) and on the rows of users without
        truth (they are not ranked).
      ks: the requested cutoffs (duplicates removed, order kept).
    """

    summary: dict[str, float]
    per_user: dict[str, np.ndarray]
    n_users_evaluated: int
    convention: str
    top_items: np.ndarray
    ks: tuple[int, ...]


# -- argument checks ----------------------------------------------------------------------------


def check_ks(ks: int | Sequence[int]) -> tuple[int, ...]:
    """Validated cutoffs: positive integers, duplicates removed, order kept."""
    if isinstance(ks, (int, np.integer)):
        ks = (ks,)
    ks = tuple(ks)
    if not ks:
        raise ConfigError("ks is empty; expected at least one cutoff, e.g. ks=(10, 20)")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"ks={ks!r}: every cutoff must be a positive integer, got {k!r}")
    return tuple(dict.fromkeys(int(k) for k in ks))


def check_convention(convention: str) -> str:
    if convention not in _ranking.CONVENTIONS:
        raise ConfigError(f"convention={convention!r}; expected one of {_ranking.CONVENTIONS}")
    return convention


def check_batch_size(batch_size: int | None) -> int | None:
    if batch_size is not None and (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise ConfigError(f"batch_size={batch_size!r}; expected a positive integer or None")
    return None if batch_size is None else int(batch_size)


def as_pattern_csr(m: Any, name: str, shape: tuple[int, int]) -> sp.csr_array:
    """A canonical csr_array (sorted, no duplicates, no explicit zeros, data 1.0) of the nonzero
    pattern of a scipy sparse matrix or a dense [n_users, n_items] array."""
    if sp.issparse(m):
        csr = sp.csr_array(m, dtype=np.float64, copy=True)
    else:
        dense = np.asarray(m)
        if dense.ndim != 2:
            raise DataError(
                f"{name} must be a scipy sparse matrix or a 2-D array, got shape {dense.shape}"
            )
        csr = sp.csr_array(dense != 0, dtype=np.float64)
    if csr.shape != tuple(shape):
        raise DataError(f"{name} has shape {csr.shape}, expected {tuple(shape)} (as scores)")
    csr.sum_duplicates()
    csr.eliminate_zeros()
    csr.sort_indices()
    csr.data[:] = 1.0
    return csr


def check_item_popularity(item_popularity: Any, n_items: int) -> np.ndarray | None:
    if item_popularity is None:
        return None
    pop = np.asarray(item_popularity, np.float64)
    if pop.shape != (n_items,):
        raise DataError(f"item_popularity has shape {pop.shape}, expected ({n_items},)")
    bad = np.flatnonzero(~np.isfinite(pop) | (pop < 0))
    if bad.size:
        raise DataError(f"item_popularity[{bad[0]}] = {pop[bad[0]]}; expected finite counts >= 0")
    return pop


# -- metrics from lists -------------------------------------------------------------------------


def _hits(truth: sp.csr_array, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """[N, k] bool: is items[n, j] (>= 0) a stored entry of truth row users[n]."""
    n_items = truth.shape[1]
    keys = np.repeat(np.arange(truth.shape[0], dtype=np.int64), np.diff(truth.indptr))
    keys = keys * n_items + truth.indices  # sorted: canonical CSR
    query = users[:, None].astype(np.int64) * n_items + np.maximum(items, 0)
    pos = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
    found = keys[pos] == query if len(keys) else np.zeros(query.shape, bool)
    return found & (items >= 0)


def evaluate_top_items(
    top_items: np.ndarray,
    truth: Any,
    *,
    ks: int | Sequence[int] = (10, 20),
    convention: str = "recbole",
    item_popularity: np.ndarray | None = None,
) -> EvalResult:
    """Metrics of given top-K lists (the second half of :func:`evaluate`).

    Args:
      top_items: [n_users, Kmax] int item indices, best first, distinct within a row, -1 at
        invalid positions; Kmax >= min(max(ks), n_items). Rows of users without truth are
        ignored.
      truth: [n_users, n_items] scipy sparse or dense; nonzeros are the relevant items.
      ks, convention, item_popularity: as in :func:`evaluate`.

    Returns:
      An :class:`EvalResult` (its `top_items` is the input, with ignored rows set to -1).
    """
    ks = check_ks(ks)
    convention = check_convention(convention)
    top_items = np.asarray(top_items)
    if top_items.ndim != 2 or not np.issubdtype(top_items.dtype, np.integer):
        raise DataError(
            f"top_items must be a 2-D integer array, got {top_items.dtype} {top_items.shape}"
        )
    n_users = top_items.shape[0]
    if sp.issparse(truth) or np.ndim(truth) == 2:
        n_items = truth.shape[1]
    else:
        raise DataError(f"truth must be a scipy sparse matrix or a 2-D array, got {type(truth)}")
    truth = as_pattern_csr(truth, "truth", (n_users, n_items))
    pop = check_item_popularity(item_popularity, n_items)
    kmax = min(max(ks), n_items)
    if top_items.shape[1] < kmax:
        raise DataError(
            f"top_items has {top_items.shape[1]} columns, expected >= {kmax} "
            f"(max(ks) clipped to n_items)"
        )
    if top_items.size and (top_items.min() < -1 or top_items.max() >= n_items):
        raise DataError(
            f"top_items entries must lie in [-1, {n_items}), got range "
            f"[{top_items.min()}, {top_items.max()}]"
        )

    n_truth = np.diff(truth.indptr).astype(np.int64)
    evaluated = n_truth > 0
    users = np.flatnonzero(evaluated)
    items = top_items[users, :kmax].astype(np.int64)
    valid = items >= 0
    hits = _hits(truth, users, items)

    summary: dict[str, float] = {}
    per_user: dict[str, np.ndarray] = {}
    info = None if pop is None else _beyond.self_information(pop, n_users)
    by_k = []
    for k in ks:
        kc = min(k, n_items)
        values = _ranking.accuracy_per_user(hits, valid, n_truth[users], kc, convention)
        counts = _beyond.recommendation_counts(items[:, :kc], valid[:, :kc], n_items)
        global_values = {"Coverage": _beyond.coverage(counts), "Gini": _beyond.gini(counts)}
        if pop is not None and info is not None:  # info is None exactly when pop is
            values["Novelty"] = _beyond.list_means(info, items[:, :kc], valid[:, :kc])
            values["AvgPop"] = _beyond.list_means(pop, items[:, :kc], valid[:, :kc])
        by_k.append((k, values, global_values))

    names = _ranking.ACCURACY_METRICS + BEYOND_METRICS
    for name in names:
        for k, values, global_values in by_k:
            key = f"{name}@{k}"
            if name in global_values:
                summary[key] = global_values[name]
            elif name in values:
                full = np.full(n_users, np.nan)
                full[users] = values[name]
                per_user[key] = full
                if name in _ranking.ACCURACY_METRICS:
                    summary[key] = _ranking.average(full, evaluated, convention, n_users)
                else:  # beyond-accuracy: mean over evaluated users with a non-empty list
                    v = values[name][~np.isnan(values[name])]
                    summary[key] = float(v.mean()) if v.size else float("nan")

    out_items = np.full((n_users, kmax), -1, np.int32)
    out_items[users] = np.where(valid, items, -1)
    return EvalResult(summary, per_user, int(users.size), convention, out_items, ks)


# -- scores -> lists ----------------------------------------------------------------------------


def top_items_of_scores(
    scores: Any, users: np.ndarray, k: int, exclude: sp.csr_array | None, batch_size: int
) -> np.ndarray:
    """[n_users, k] int32 top-k lists of the given users (-1 elsewhere and at invalid positions).

    Walks over `users` in batches of `batch_size` rows (the last batch padded), so that at most
    batch_size x n_items scores and masks exist at a time besides `scores` itself.

    Raises:
      DiffrecError: a ranked user's scores contain NaN.
    """
    n_users, n_items = scores.shape
    is_numpy = isinstance(scores, np.ndarray)
    dtype = _topk.score_dtype(scores.dtype)
    out = np.full((n_users, k), -1, np.int32)
    if users.size == 0:
        return out
    b = min(batch_size, users.size)
    no_exclusion = jnp.zeros((b, n_items), bool) if exclude is None else None

    def collect(idx, result):
        items, valid, has_nan = (np.asarray(a)[: idx.size] for a in result)
        if has_nan.any():
            u = int(idx[np.argmax(has_nan)])
            j = int(np.flatnonzero(np.isnan(np.asarray(scores[u], np.float64)))[0])
            raise DiffrecError(
                f"scores of user {u} contain NaN (first at item {j}); expected "
                "finite or infinite scores"
            )
        out[idx] = np.where(valid, items, -1)

    # at most two batches in flight: bounded memory
    pending: collections.deque[tuple[np.ndarray, tuple[jax.Array, ...]]] = collections.deque()
    for start in range(0, users.size, b):
        idx = users[start : start + b]
        padded = _topk.pad_indices(idx, b)
        if is_numpy:
            block = np.asarray(scores[padded], dtype=dtype)
        else:
            block = scores[jnp.asarray(padded, jnp.int32)].astype(dtype)
        mask = no_exclusion if exclude is None else _topk.dense_pattern(exclude, padded)
        pending.append((idx, _topk.masked_top_k(block, mask, k=k)))  # dispatched asynchronously
        if len(pending) > 1:
            collect(*pending.popleft())
    while pending:
        collect(*pending.popleft())
    return out


def evaluate(
    scores: Any,
    truth: Any,
    *,
    exclude: Any = None,
    ks: int | Sequence[int] = (10, 20),
    convention: str = "recbole",
    item_popularity: np.ndarray | None = None,
    batch_size: int | None = None,
) -> EvalResult:
    """Full-ranking top-K metrics of a score matrix. See :mod:`diffrec_jax.metrics`.

    Args:
      scores: [n_users, n_items] numpy or JAX array, higher is better. Only the rows of users
        with truth are read; a NaN in one of them raises.
      truth: [n_users, n_items] scipy sparse (any format) or dense array; nonzeros are the
        relevant items.
      exclude: like `truth`; nonzeros are never recommended (e.g. the train items). None: no
        exclusion.
      ks: cutoffs; K > n_items is computed as K = n_items (the key keeps the requested K).
      convention: "recbole" (default), "diffrec" or "recsys2019".
      item_popularity: [n_items] counts (e.g. ``train.item_counts()``) for Novelty and AvgPop;
        None omits these two metrics.
      batch_size: users per batch; default keeps batch x n_items <= 2**24 (at most 1024 users).
        Results do not depend on it.

    Returns:
      An :class:`EvalResult`.

    Raises:
      DataError: inconsistent shapes or bad item_popularity.
      ConfigError: bad ks, convention or batch_size.
      DiffrecError: NaN scores (the message names the user and an item).
    """
    ks = check_ks(ks)
    convention = check_convention(convention)
    batch_size = check_batch_size(batch_size)
    if not isinstance(scores, jax.Array):
        scores = np.asarray(scores)
    if scores.ndim != 2:
        raise DataError(f"scores must be a 2-D [n_users, n_items] array, got shape {scores.shape}")
    n_users, n_items = scores.shape
    if n_items < 1:
        raise DataError("scores has no item columns; expected n_items >= 1")
    truth = as_pattern_csr(truth, "truth", (n_users, n_items))
    excl = None if exclude is None else as_pattern_csr(exclude, "exclude", (n_users, n_items))
    check_item_popularity(item_popularity, n_items)
    if batch_size is None:
        batch_size = _topk.default_batch_size(n_items)
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    kmax = min(max(ks), n_items)
    top = top_items_of_scores(scores, users, kmax, excl, batch_size)
    return evaluate_top_items(
        top, truth, ks=ks, convention=convention, item_popularity=item_popularity
    )
