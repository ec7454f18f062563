"""SLIM ElasticNet: the all-targets coordinate descent against a brute-force solver."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp

from diffrec_jax import models
from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.errors import ConfigError
from diffrec_jax.models.slim import slim_weights
from diffrec_jax.protocol import FitData, UserBatch


def brute_force(x, alpha, l1_ratio):
    """sklearn's ElasticNet(positive=True, fit_intercept=False) per target with w_j = 0.

    Exact, by an active-set NNLS: with A = [X; sqrt(n l2) I] and b = [y; 0] the objective is
    (1/2n) |A w - b|^2 + l1 1^T w, which equals (1/2n) |A w - b'|^2 + const for
    b' = b - n l1 A (A^T A)^-1 1 (needs l2 > 0). Column j is dropped for target j.
    """
    x = np.asarray(x, np.float64)
    n, m = x.shape
    l1, l2 = alpha * l1_ratio, alpha * (1 - l1_ratio)
    w = np.zeros((m, m))
    for j in range(m):
        keep = np.arange(m) != j
        a = np.vstack([x[:, keep], np.sqrt(n * l2) * np.eye(m - 1)])
        b = np.concatenate([x[:, j], np.zeros(m - 1)])
        b = b - n * l1 * a @ np.linalg.solve(a.T @ a, np.ones(m - 1))
        w[keep, j], _ = scipy.optimize.nnls(a, b)
    return w


@pytest.mark.parametrize("alpha,l1_ratio", [(0.01, 0.3), (0.05, 0.9), (0.002, 0.0), (0.02, 0.02)])
@pytest.mark.parametrize("random_order", [False, True])
def test_matches_brute_force_elastic_net(alpha, l1_ratio, random_order):
    rng = np.random.default_rng(0)
    x = (rng.random((40, 9)) < 0.35).astype(np.float64)
    x[:, 4] = 0.0  # an item without users
    key = jax.random.key(3) if random_order else None
    w, sweeps = slim_weights(
        sp.csr_array(x), alpha=alpha, l1_ratio=l1_ratio, max_iter=2000, tol=1e-6, key=key
    )
    expected = brute_force(x, alpha, l1_ratio)
    assert sweeps < 2000
    np.testing.assert_allclose(w, expected, atol=1e-5)
    assert (w >= 0).all() and (np.diag(w) == 0).all()


def test_two_identical_items_by_hand():
    # x_0 = x_1 on c users, pure L2 (l1_ratio = 0): w_10 = (c/n) / (c/n + alpha) = c / (c + n a).
    n, c, alpha = 10, 4, 0.05
    x = np.zeros((n, 2))
    x[:c] = 1.0
    w, _ = slim_weights(sp.csr_array(x), alpha=alpha, l1_ratio=0.0, max_iter=500, tol=1e-7)
    np.testing.assert_allclose(
        w, [[0.0, c / (c + n * alpha)], [c / (c + n * alpha), 0.0]], rtol=1e-5
    )
    # A strong L1 penalty (above the correlation c / n) zeroes everything.
    w, _ = slim_weights(sp.csr_array(x), alpha=1.0, l1_ratio=0.5, max_iter=10)
    np.testing.assert_array_equal(w, 0.0)


def test_model_keeps_top_k_per_column_and_scores_rows():
    rng = np.random.default_rng(1)
    x = (rng.random((60, 12)) < 0.4).astype(np.float32)
    users, items = np.nonzero(x)
    m = InteractionMatrix.from_arrays(users, items, shape=x.shape)
    model = models.get("slim").build(topk=3, alpha=0.005, l1_ratio=0.1, tol=1e-6, max_iter=500)
    params = model.fit(FitData(m), jax.random.key(0))
    w = np.asarray(params["weights"])
    full, _ = slim_weights(
        m.csr, alpha=0.005, l1_ratio=0.1, tol=1e-6, max_iter=500, key=jax.random.key(0)
    )
    assert ((w != 0).sum(axis=0) <= 3).all()
    for j in range(12):  # the kept weights are the column's three largest
        np.testing.assert_allclose(np.sort(w[:, j])[-3:], np.sort(full[:, j])[-3:], rtol=1e-6)
    batch = UserBatch(jnp.arange(60, dtype=jnp.int32), jnp.asarray(x))
    np.testing.assert_allclose(
        np.asarray(jax.jit(model.score)(params, batch)), x @ w, rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"alpha": 0.0}, "alpha"),
        ({"l1_ratio": 1.5}, "l1_ratio"),
        ({"topk": 0}, "topk"),
        ({"max_iter": 0}, "max_iter"),
    ],
)
def test_bad_hyperparameters_raise(bad, match):
    with pytest.raises(ConfigError, match=match):
        models.get("slim").build(**bad)
