r"""Random-walk item-item models: P3alpha and RP3beta.

With :math:`P_{ui} = x_{ui} / \sum_j x_{uj}` (user -> item step, row-normalised train values) and
:math:`P_{iu} = 1 / |U_i|` for the users of item i (item -> user step, binary pattern), the
three-step walk item -> user -> item gives

.. math::
   W_{ij} = \sum_u P_{iu}^{\alpha} P_{uj}^{\alpha} \quad (\text{P3alpha}), \qquad
   W_{ij} = \frac{\sum_u P_{iu}^{\alpha} P_{uj}^{\alpha}}{|U_j|^{\beta}} \quad (\text{RP3beta}),

the power applying to stored entries only (items without users get zero weight). As in the
RecSys2019 evaluation code (Ferrari Dacrema et al.): the diagonal is zeroed, every row i keeps its
``topk`` largest entries, rows are optionally l1-normalised (``normalize``), and finally every
column keeps its ``topk`` largest entries. Scores are :math:`x_u W`. W is a dense
[n_items, n_items] float32 matrix.

References:
  Cooper, Lee, Radecki, Cannarsa, Lin, "Random Walks in Recommender Systems: Exact Computation
  and Simulations", WWW 2014 (P3alpha).
  Paudel, Christoffel, Mendez, Bernstein, "Updatable, Accurate, Diverse, and Scalable
  Recommendations for Interactive Applications", ACM TiiS 2016 (RP3beta).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from diffrec_jax.errors import ConfigError
from diffrec_jax.models.knn import gram, keep_top_k_per_column
from diffrec_jax.protocol import FitData, Recommender, UserBatch


def _check(topk, alpha, beta) -> None:
    if isinstance(topk, bool) or not isinstance(topk, int | np.integer) or topk < 1:
        raise ConfigError(f"topk={topk!r}; expected a positive integer")
    for name, v in (("alpha", alpha), ("beta", beta)):
        if not (np.isfinite(v) and v >= 0):
            raise ConfigError(f"{name}={v!r}; expected a finite number >= 0")


def random_walk_weights(
    x, *, alpha: float, beta: float = 0.0, topk: int, normalize: bool
) -> np.ndarray:
    """RP3beta item-item weights (P3alpha is beta = 0); formula in the module docstring.

    Args:
      x: [n_users, n_items] scipy sparse non-negative train matrix.
      alpha: exponent of the transition probabilities.
      beta: popularity penalty exponent.
      topk: entries kept per row, then per column.
      normalize: l1-normalise the rows after the row-wise pruning.

    Returns:
      [n_items, n_items] float32 W.
    """
    _check(topk, alpha, beta)
    x = sp.csr_array(x)
    data = np.asarray(x.data, np.float64)
    rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    user_sum = np.bincount(rows, weights=data, minlength=x.shape[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        p_ui = np.where(user_sum[rows] > 0, data / user_sum[rows], 0.0) ** alpha
    p_ui_a = sp.csr_array((p_ui.astype(np.float32), x.indices, x.indptr), shape=x.shape)
    pattern = sp.csr_array((np.ones(x.nnz, np.float32), x.indices, x.indptr), shape=x.shape)
    degree = np.bincount(x.indices, minlength=x.shape[1]).astype(np.float64)
    safe = np.maximum(degree, 1.0)
    row_scale = np.where(degree > 0, safe**-alpha, 0.0)
    col_scale = np.where(degree > 0, safe**-beta, 0.0)
    w = gram(pattern, p_ui_a)  # [n_items, n_items] sum_u [x_ui != 0] P_uj^alpha
    w *= row_scale.astype(np.float32)[:, None]
    w *= col_scale.astype(np.float32)[None, :]
    np.fill_diagonal(w, 0.0)
    w = keep_top_k_per_column(w.T, topk).T  # top-k of every row
    if normalize:
        sums = np.abs(w).sum(axis=1, keepdims=True)
        np.divide(w, sums, out=w, where=sums > 0)
    return keep_top_k_per_column(w, topk)


def _random_walk_model(
    name: str, alpha: float, beta: float, topk: int, normalize: bool, hparams: dict
) -> Recommender:
    _check(topk, alpha, beta)

    def fit(data: FitData, key: jax.Array) -> dict[str, jax.Array]:
        del key  # deterministic
        w = random_walk_weights(
            data.train.csr, alpha=alpha, beta=beta, topk=topk, normalize=normalize
        )
        return {"weights": jnp.asarray(w)}

    def score(params: dict[str, jax.Array], batch: UserBatch) -> jax.Array:
        return batch.rows @ params["weights"]

    return Recommender(name, hparams, fit, score)


def p3alpha(topk: int = 100, alpha: float = 1.0, normalize: bool = False) -> Recommender:
    """P3alpha (search space: topk 5-1000, alpha 0-2, normalize True/False).

    Defaults are the reference code's (topK=100, alpha=1, normalize_similarity=False).
    Params: ``{"weights": [n_items, n_items] float32}``.
    """
    return _random_walk_model(
        "p3alpha", alpha, 0.0, topk, normalize, dict(topk=topk, alpha=alpha, normalize=normalize)
    )


def rp3beta(
    topk: int = 100, alpha: float = 1.0, beta: float = 0.6, normalize: bool = True
) -> Recommender:
    """RP3beta (search space: topk 5-1000, alpha 0-2, beta 0-2, normalize True/False).

    Defaults are the reference code's (topK=100, alpha=1, beta=0.6, normalize_similarity=True).
    Params: ``{"weights": [n_items, n_items] float32}``.
    """
    return _random_walk_model(
        "rp3beta",
        alpha,
        beta,
        topk,
        normalize,
        dict(topk=topk, alpha=alpha, beta=beta, normalize=normalize),
    )
