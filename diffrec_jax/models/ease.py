r"""EASE: embarrassingly shallow autoencoder (Steck, WWW 2019).

Closed form with L2 regularisation :math:`\lambda`:

.. math::
   P = (X^\top X + \lambda I)^{-1}, \qquad B = I - P \,\mathrm{diag}(1 / \mathrm{diag}(P)),

so that :math:`B_{ii} = 0` and :math:`B_{ij} = -P_{ij} / P_{jj}` for :math:`i \ne j`.
Scores are :math:`X_u B`. The Gram matrix and the inverse are float64-exact on the host
(numpy/LAPACK through a Cholesky factorisation: G is symmetric positive definite for
:math:`\lambda > 0`); B is stored as float32 and scoring runs in JAX.

References:
  Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from diffrec_jax.data import guards
from diffrec_jax.errors import ConfigError
from diffrec_jax.models.knn import gram as knn_gram
from diffrec_jax.protocol import FitData, Recommender, UserBatch


def _fill_upper_from_lower(c: np.ndarray, block: int = 256) -> None:
    """Copies the strict lower triangle of square `c` onto its upper triangle, in place."""
    n = c.shape[0]
    for start in range(0, n, block):
        stop = min(n, start + block)
        upper = np.triu(np.ones((stop - start, n - start), bool), 1)
        np.copyto(c[start:stop, start:], c[start:, start:stop].T, where=upper)


def check_memory(n_items: int) -> None:
    """Refuses a catalogue whose [n_items, n_items] float64 matrices (the Gram matrix and its
    inverse, both alive at the peak) exceed the available memory, before allocating them.

    Raises:
      ConfigError: naming n_items and the size it would take.
    """
    gram_bytes = float(n_items) ** 2 * np.dtype(np.float64).itemsize
    peak = 2 * gram_bytes
    too_big, avail = guards.exceeds_memory(peak)
    if too_big:
        raise ConfigError(
            f"EASE with n_items={n_items:,} needs an [n_items, n_items] float64 Gram matrix of "
            f"{guards.format_bytes(gram_bytes)} and about {guards.format_bytes(peak)} at the peak "
            f"(the matrix and its inverse), more than the {avail}; expected a catalogue of at "
            "most a few tens of thousands of items (filter rare items, e.g. kcore=, or check the "
            "item ids: a stray large id sizes the catalogue)"
        )


def ease_weights(x, lam: float) -> np.ndarray:
    """EASE item-item weights B.

    The Gram matrix comes from :func:`diffrec_jax.models.knn.gram` (a float32 BLAS product when
    that is exact, i.e. integer-valued data such as implicit feedback, else a float64 sparse
    product); the inversion is float64 LAPACK (Cholesky ``potrf`` + ``potri``).

    Args:
      x: (n_users, n_items) scipy sparse or dense interaction matrix.
      lam: L2 regularisation, > 0.

    Returns:
      [n_items, n_items] float64 B with zero diagonal.

    Raises:
      ConfigError: the matrices would not fit in the available memory (see
        :func:`check_memory`; checked before anything is allocated).
    """
    check_memory(x.shape[1])
    gram = knn_gram(x, dtype=np.float64)
    gram[np.diag_indices_from(gram)] += lam
    # P = G^{-1} through Cholesky: potrf + potri return the upper triangle of the inverse.
    chol, info = scipy.linalg.lapack.dpotrf(gram, lower=False, overwrite_a=True)
    if info != 0:
        raise ConfigError(f"EASE Gram matrix is not positive definite ({lam=}); expected lam > 0")
    inv, info = scipy.linalg.lapack.dpotri(chol, lower=False, overwrite_c=True)
    if info != 0:
        raise ConfigError(f"EASE inversion failed (LAPACK info {info}, {lam=})")
    # The upper triangle of column-major `inv` is the lower triangle of its C-ordered transpose.
    p = np.ascontiguousarray(inv.T)
    _fill_upper_from_lower(p)
    p /= -np.diag(p).copy()[None, :]
    p[np.diag_indices_from(p)] = 0.0
    return p


def ease(lam: float = 500.0) -> Recommender:
    """EASE with L2 regularisation `lam` (search space: 1 to 1e7, log-uniform).

    Params: ``{"weights": [n_items, n_items] float32}``.
    """
    if not 0 < lam < float("inf"):  # also rejects NaN
        raise ConfigError(f"EASE needs a finite lam > 0, got {lam=}")

    def fit(data: FitData, key: jax.Array) -> dict[str, jax.Array]:
        del key  # closed form
        return {"weights": jnp.asarray(ease_weights(data.train.csr, lam), jnp.float32)}

    return Recommender("ease", {"lam": lam}, fit, _score)


def _score(params: dict[str, jax.Array], batch: UserBatch) -> jax.Array:
    """[B, n_items] scores rows @ B (module level: one compilation for every lam)."""
    return batch.rows @ params["weights"]
