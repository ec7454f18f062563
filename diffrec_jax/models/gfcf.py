r"""GF-CF: graph filters for collaborative filtering (Shen et al., CIKM 2021).

With the train matrix R ([n_users, n_items]), degrees :math:`D_u = \mathrm{diag}(R 1)` and
:math:`D_i = \mathrm{diag}(1^\top R)`, and the normalised matrix
:math:`\tilde R = D_u^{-1/2} R D_i^{-1/2}`, GF-CF scores

.. math::
   s_u = r_u \big(\tilde R^\top \tilde R
         + \alpha\, D_i^{-1/2} \bar V \bar V^\top D_i^{1/2}\big),

a linear low-pass filter plus :math:`\alpha` times an ideal low-pass filter built from the
``cutoff`` leading right singular vectors :math:`\bar V` of :math:`\tilde R`. This follows the
authors' code (``GF_CF.getUsersRating`` in github.com/yshenaw/GF_CF: 256 singular vectors,
:math:`\alpha = 0.3`, raw train rows :math:`r_u` as input). Zero-degree users and items get zero
normalisers (the authors' code would divide by zero for cold items).

The item-item matrix is dense [n_items, n_items] float32; :math:`\bar V` comes from
:func:`diffrec_jax.models.svd.top_right_singular_vectors` (eigenvectors of
:math:`\tilde R^\top \tilde R` for up to 5,000 items, ARPACK beyond).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from diffrec_jax.errors import ConfigError
from diffrec_jax.models.knn import gram
from diffrec_jax.models.svd import GRAM_MAX_COLUMNS, top_eigenvectors, top_right_singular_vectors
from diffrec_jax.protocol import FitData, Recommender, UserBatch


def _inv_sqrt(d: np.ndarray) -> np.ndarray:
    out = np.zeros_like(d, dtype=np.float64)
    np.divide(1.0, np.sqrt(d), out=out, where=d > 0)
    return out


def gfcf_weights(x, *, alpha: float, cutoff: int, key: jax.Array | None = None) -> np.ndarray:
    """GF-CF item-item matrix (module docstring).

    Args:
      x: [n_users, n_items] scipy sparse non-negative train matrix.
      alpha: weight of the ideal low-pass filter (0 disables it and skips the SVD).
      cutoff: number of singular vectors of the ideal filter.
      key: typed key, used only by ARPACK (more than 5,000 items).

    Returns:
      [n_items, n_items] float32 W; scores are x_u W.
    """
    _check(alpha, cutoff)
    x = sp.csr_array(x, dtype=np.float64)
    du = np.asarray(x.sum(axis=1)).ravel()
    di = np.asarray(x.sum(axis=0)).ravel()
    di_inv_sqrt = _inv_sqrt(di)
    # R~^T R~ = D_i^-1/2 (R^T D_u^-1 R) D_i^-1/2: a Gram matrix of D_u^-1/2 R D_i^-1/2.
    r_norm = sp.csr_array(sp.diags_array(_inv_sqrt(du)) @ x @ sp.diags_array(di_inv_sqrt))
    w = gram(r_norm)  # float32
    if alpha:
        if x.shape[1] <= GRAM_MAX_COLUMNS:
            v = top_eigenvectors(w, cutoff)
        else:
            v = top_right_singular_vectors(r_norm, cutoff, key, method="arpack")
        di_sqrt = np.sqrt(np.maximum(di, 0.0))
        left = (v * di_inv_sqrt[:, None]).astype(np.float32)  # D_i^-1/2 V
        right = (v * di_sqrt[:, None]).astype(np.float32)  # D_i^1/2 V
        w += np.float32(alpha) * (left @ right.T)
    return w


def _check(alpha, cutoff) -> None:
    if not (np.isfinite(alpha) and alpha >= 0):
        raise ConfigError(f"alpha={alpha!r}; expected a finite number >= 0")
    if isinstance(cutoff, bool) or not isinstance(cutoff, int | np.integer) or cutoff < 1:
        raise ConfigError(f"cutoff={cutoff!r}; expected a positive integer")


def gfcf(alpha: float = 0.3, cutoff: int = 256) -> Recommender:
    """GF-CF (search space: alpha 0-1, cutoff 16-1024); defaults are the authors'.

    Params: ``{"weights": [n_items, n_items] float32}``.
    """
    _check(alpha, cutoff)

    def fit(data: FitData, key: jax.Array) -> dict[str, jax.Array]:
        return {
            "weights": jnp.asarray(
                gfcf_weights(data.train.csr, alpha=alpha, cutoff=cutoff, key=key)
            )
        }

    def score(params: dict[str, jax.Array], batch: UserBatch) -> jax.Array:
        return batch.rows @ params["weights"]

    return Recommender("gfcf", {"alpha": alpha, "cutoff": cutoff}, fit, score)
