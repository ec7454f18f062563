r"""PureSVD (Cremonesi, Koren, Turrin, RecSys 2010) and the truncated-SVD helper it shares.

Truncated SVD of the train matrix, :math:`X \approx U_k \Sigma_k V_k^\top`, with the missing
entries taken as zeros; scores are :math:`x_u V_k V_k^\top` (the projection of the user's row on
the top-k right singular subspace, which equals :math:`U_k \Sigma_k V_k^\top` for train users).

:func:`top_right_singular_vectors` computes :math:`V_k` in float64, deterministically:

- up to :data:`GRAM_MAX_COLUMNS` columns, as the leading eigenvectors of the dense Gram matrix
  :math:`X^\top X` (LAPACK ``syevd``; ~2 s for 2,810 items, whatever k);
- beyond, with :func:`scipy.sparse.linalg.svds` (ARPACK) from a starting vector drawn from the
  fit key (its cost grows with k: ~3 s for k = 64 and ~30 s for k = 350 on MovieLens-1M).

Both give the same subspace up to round-off when the k-th and (k+1)-th singular values differ.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg

from diffrec_jax.errors import ConfigError, DataError
from diffrec_jax.models.knn import gram
from diffrec_jax.protocol import FitData, Recommender, UserBatch

GRAM_MAX_COLUMNS = 5000


def top_eigenvectors(g: np.ndarray, k: int) -> np.ndarray:
    """The k leading eigenvectors of a dense symmetric matrix.

    Args:
      g: [n, n] symmetric array.
      k: 1 <= k <= n.

    Returns:
      [n, k] float64 orthonormal columns, by decreasing eigenvalue.
    """
    n = g.shape[0]
    if not 1 <= k <= n:
        raise DataError(f"k={k} eigenvectors of a {n} x {n} matrix; expected 1 <= k <= {n}")
    _, v = np.linalg.eigh(np.asarray(g, np.float64))
    return np.ascontiguousarray(v[:, ::-1][:, :k])


def top_right_singular_vectors(
    x, k: int, key: jax.Array | None = None, *, method: str = "auto"
) -> np.ndarray:
    """The k leading right singular vectors of a sparse matrix.

    Args:
      x: [n, m] scipy sparse matrix.
      k: number of vectors; 1 <= k <= m for "gram", 1 <= k < min(n, m) for "arpack".
      key: typed key for ARPACK's starting vector (required by "arpack").
      method: "gram" (eigenvectors of the dense x^T x), "arpack" (svds), or "auto" ("gram"
        when m <= GRAM_MAX_COLUMNS).

    Returns:
      [m, k] float64 orthonormal columns, by decreasing singular value.
    """
    n, m = x.shape
    if method == "auto":
        method = "gram" if m <= GRAM_MAX_COLUMNS else "arpack"
    if method == "gram":
        return top_eigenvectors(gram(x, dtype=np.float64), k)
    if method != "arpack":
        raise ConfigError(f"method={method!r}; expected 'auto', 'gram' or 'arpack'")
    if not 1 <= k < min(n, m):
        raise DataError(
            f"k={k} singular vectors of a {n} x {m} matrix with ARPACK; expected "
            f"1 <= k < {min(n, m)}"
        )
    if key is None:
        raise ConfigError("method='arpack' needs a key for its starting vector")
    v0 = np.asarray(jax.random.uniform(key, (min(n, m),), jnp.float32), np.float64) - 0.5
    _, s, vt = scipy.sparse.linalg.svds(sp.csr_array(x, dtype=np.float64), k=k, v0=v0)
    return np.ascontiguousarray(vt[np.argsort(-s)].T)


def puresvd(factors: int = 50) -> Recommender:
    """PureSVD with `factors` singular vectors (search space: 1-350).

    Params: ``{"item_factors": [n_items, factors] float32}`` (the right singular vectors).
    """
    if isinstance(factors, bool) or not isinstance(factors, int | np.integer) or factors < 1:
        raise ConfigError(f"factors={factors!r}; expected a positive integer")

    def fit(data: FitData, key: jax.Array) -> dict[str, jax.Array]:
        n_users, n_items = data.train.csr.shape
        arpack = n_items > GRAM_MAX_COLUMNS
        limit = min(n_users, n_items) - 1 if arpack else n_items
        if factors > limit:
            raise ConfigError(
                f"PureSVD factors={factors} is above the maximum {limit} for this data "
                f"({n_users} users x {n_items} items"
                + ("; ARPACK needs factors < min(users, items)" if arpack else "")
                + f"); expected 1 <= factors <= {limit}"
            )
        v = top_right_singular_vectors(data.train.csr, factors, key)
        return {"item_factors": jnp.asarray(v, jnp.float32)}

    def score(params: dict[str, jax.Array], batch: UserBatch) -> jax.Array:
        v = params["item_factors"]
        return (batch.rows @ v) @ v.T

    return Recommender("puresvd", {"factors": factors}, fit, score)
