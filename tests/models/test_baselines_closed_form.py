"""TopPop and EASE against hand-checkable cases and a numpy float64 reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from diffrec_jax import models
from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.errors import ConfigError
from diffrec_jax.models.ease import ease_weights
from diffrec_jax.protocol import FitData, UserBatch


def _random_matrix(rng, n_users=40, n_items=25, density=0.2) -> InteractionMatrix:
    dense = rng.random((n_users, n_items)) < density
    users, items = np.nonzero(dense)
    return InteractionMatrix.from_arrays(users, items, shape=(n_users, n_items))


def _batch(m: InteractionMatrix) -> UserBatch:
    users = np.arange(m.n_users)
    return UserBatch(jnp.asarray(users, jnp.int32), jnp.asarray(m.dense_rows(users)))


def test_toppop_scores_are_train_counts():
    m = InteractionMatrix.from_arrays([0, 1, 1, 2, 2, 2], [0, 0, 1, 0, 1, 2], shape=(3, 4))
    model = models.get("toppop").build()
    params = model.fit(FitData(m), jax.random.key(0))
    scores = np.asarray(jax.jit(model.score)(params, _batch(m)))
    np.testing.assert_array_equal(scores, np.tile([3.0, 2.0, 1.0, 0.0], (3, 1)))


def test_ease_matches_numpy_float64_formula():
    rng = np.random.default_rng(0)
    m = _random_matrix(rng)
    lam = 3.5
    x = m.csr.toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    expected = np.eye(x.shape[1]) - p / np.diag(p)[None, :]
    np.testing.assert_allclose(ease_weights(m.csr, lam), expected, atol=1e-12)
    model = models.get("ease").build(lam=lam)
    params = model.fit(FitData(m), jax.random.key(0))
    scores = np.asarray(jax.jit(model.score)(params, _batch(m)))
    np.testing.assert_allclose(scores, x @ expected, rtol=1e-4, atol=1e-5)


def test_ease_hand_checkable_two_items():
    # Two items always co-occurring: G = [[n, n], [n, n]] + lam I.
    n, lam = 4, 2.0
    x = sp.csr_array(np.ones((n, 2)))
    b = ease_weights(x, lam)
    # P = inv(G); B_01 = -P_01 / P_11 = n / (n + lam).
    np.testing.assert_allclose(b, [[0.0, n / (n + lam)], [n / (n + lam), 0.0]])


def test_ease_is_closed_form_minimiser():
    # The gradient of ||X - XB||^2 + lam ||B||^2 w.r.t. off-diagonal B vanishes at the solution
    # up to the diagonal Lagrange multipliers (the gradient is diagonal).
    rng = np.random.default_rng(1)
    x = _random_matrix(rng, 30, 12, 0.3).csr.toarray().astype(np.float64)
    lam = 1.0
    b = ease_weights(sp.csr_array(x), lam)
    grad = -2 * x.T @ (x - x @ b) + 2 * lam * b
    off = grad - np.diag(np.diag(grad))
    np.testing.assert_allclose(off, 0.0, atol=1e-9)


@pytest.mark.parametrize("lam", [0.0, -1.0])
def test_ease_rejects_non_positive_lambda(lam):
    with pytest.raises(ConfigError, match="lam"):
        models.get("ease").build(lam=lam)


def test_registry_errors_name_what_is_available():
    with pytest.raises(ConfigError, match="toppop"):
        models.get("nope")
    with pytest.raises(ConfigError, match="no hyperparameter"):
        models.get("ease").build(alpha=1.0)
