r"""EASE: embarrassingly shallow autoencoder (Steck, WWW 2019).

Closed form with L2 regularisation :math:`\lambda`:

.. math::
   P = (X^\top X + \lambda I)^{-1}, \qquad B = I - P \,\mathrm{diag}(1 / \mathrm{diag}(P)),

so that :math:`B_{ii} = 0` and :math:`B_{ij} = -P_{ij} / P_{jj}` for :math:`i \ne j`.
Scores are :math:`X_u B`. The Gram matrix and the inverse are computed in float64 on the host
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

from diffrec_jax.errors import ConfigError
from diffrec_jax.models.base import FitData, Recommender, UserBatch


def ease_weights(x, lam: float) -> np.ndarray:
    """EASE item-item weights B.

    Args:
      x: (n_users, n_items) scipy sparse or dense interaction matrix.
      lam: L2 regularisation, > 0.

    Returns:
      [n_items, n_items] float64 B with zero diagonal.
    """
    gram = x.T @ x
    gram = np.asarray(gram.toarray() if hasattr(gram, "toarray") else gram, np.float64)
    gram[np.diag_indices_from(gram)] += lam
    # P = G^{-1} through Cholesky: potrf + potri return the upper triangle of the inverse.
    chol, info = scipy.linalg.lapack.dpotrf(gram, lower=False, overwrite_a=True)
    if info != 0:
        raise ConfigError(f"EASE Gram matrix is not positive definite ({lam=}); expected lam > 0")
    inv, info = scipy.linalg.lapack.dpotri(chol, lower=False, overwrite_c=True)
    if info != 0:
        raise ConfigError(f"EASE inversion failed (LAPACK info {info}, {lam=})")
    p = np.triu(inv) + np.triu(inv, 1).T
    b = -p / np.diag(p)[None, :]
    b[np.diag_indices_from(b)] = 0.0
    return b


def ease(lam: float = 500.0) -> Recommender:
    """EASE with L2 regularisation `lam` (search space: 1 to 1e7, log-uniform).

    Params: ``{"weights": [n_items, n_items] float32}``.
    """
    if not lam > 0:
        raise ConfigError(f"EASE needs lam > 0, got {lam=}")

    def fit(data: FitData, key: jax.Array) -> dict[str, jax.Array]:
        del key  # closed form
        return {"weights": jnp.asarray(ease_weights(data.train.csr, lam), jnp.float32)}

    return Recommender("ease", {"lam": lam}, fit, _score)


def _score(params: dict[str, jax.Array], batch: UserBatch) -> jax.Array:
    """[B, n_items] scores rows @ B (module level: one compilation for every lam)."""
    return batch.rows @ params["weights"]
