"""Batched top-K with exclusion masks: the one jit-compiled piece of the evaluation.

Tie rule: among equal scores the item with the LOWER index comes first. This is what
`jax.lax.top_k` does (checked on CPU for every K up to the catalogue size, see
tests/metrics/test_topk.py) and it equals numpy's ``np.argsort(-scores, kind="stable")``.
Two details make the equality exact: ``-0.0`` is mapped to ``+0.0`` first (XLA orders ``-0.0``
below ``+0.0``, numpy treats them as equal) and a model score of ``-inf`` is raised to the
lowest finite value, so that it still ranks above every excluded item (set to ``-inf``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

# Default bound on the number of elements of one [batch, n_items] block.
MAX_BATCH_ELEMENTS = 2**24
MAX_BATCH_USERS = 1024


def default_batch_size(n_items: int) -> int:
    """Users per batch such that batch x n_items <= 2**24 elements, and at most 1024 users."""
    return int(max(1, min(MAX_BATCH_USERS, MAX_BATCH_ELEMENTS // max(1, n_items))))


def masked_top_k_impl(
    scores: jax.Array, exclude: jax.Array, k: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Top-k items of every row with excluded items never recommended (traceable, not jitted).

    Args:
      scores: [B, n_items] float scores, higher is better.
      exclude: [B, n_items] bool, True where an item must not be recommended.
      k: list length, 1 <= k <= n_items.

    Returns:
      items: [B, k] int32 item indices, best first (lower index first among ties).
      valid: [B, k] bool, False where the position holds an excluded item (only happens when
        fewer than k items are rankable).
      has_nan: [B] bool, True where the row's scores contain a NaN (anywhere, also at excluded
        items; the caller raises).
    """
    has_nan = jnp.isnan(scores).any(axis=1)
    s = jnp.where(scores == 0, jnp.zeros_like(scores), scores)  # -0.0 -> +0.0
    s = jnp.maximum(s, jnp.finfo(s.dtype).min)  # model -inf -> lowest finite
    s = jnp.where(exclude, jnp.asarray(-jnp.inf, s.dtype), s)
    _, items = jax.lax.top_k(s, k)
    valid = ~jnp.take_along_axis(exclude, items, axis=1)
    return items.astype(jnp.int32), valid, has_nan


masked_top_k = jax.jit(masked_top_k_impl, static_argnames=("k",))
masked_top_k.__doc__ = (
    "jit-compiled :func:`masked_top_k_impl`; compiles once per (batch, n_items, k, dtype)."
)


def score_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype scores are ranked in: floats as JAX keeps them (float64 -> float32 unless
    jax_enable_x64), anything else (ints, bools) -> float32."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.floating):
        return np.dtype(jax.dtypes.canonicalize_dtype(dtype))
    return np.dtype(np.float32)


def dense_pattern(csr: sp.csr_array, rows: np.ndarray) -> np.ndarray:
    """[len(rows), n_items] bool: True at the stored entries of the given rows of `csr`.

    `csr` must be canonical (sorted, no duplicates, no explicit zeros); memory is
    len(rows) x n_items, never the whole matrix.
    """
    rows = np.asarray(rows, np.int64)
    out = np.zeros((len(rows), csr.shape[1]), bool)
    indptr, indices = csr.indptr, csr.indices
    starts, ends = indptr[rows], indptr[rows + 1]
    lengths = ends - starts
    r = np.repeat(np.arange(len(rows)), lengths)
    first = np.cumsum(lengths) - lengths
    flat = np.arange(lengths.sum()) + np.repeat(starts - first, lengths)
    out[r, indices[flat]] = True
    return out


def pad_indices(idx: np.ndarray, size: int) -> np.ndarray:
    """Pads a non-empty index array to `size` by repeating its first entry (real inputs, so a
    model never sees an artificial all-zero row; the padded rows are ignored)."""
    idx = np.asarray(idx, np.int64)
    if len(idx) == size:
        return idx
    return np.concatenate([idx, np.full(size - len(idx), idx[0], np.int64)])
