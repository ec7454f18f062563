"""PureSVD and the truncated-SVD helper against numpy's dense SVD."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from diffrec_jax import models
from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.errors import ConfigError, DataError
from diffrec_jax.models.svd import top_right_singular_vectors
from diffrec_jax.protocol import FitData, UserBatch


def _random(rng, shape=(30, 12), density=0.4):
    return (rng.random(shape) < density).astype(np.float64)


@pytest.mark.parametrize("method", ["gram", "arpack"])
@pytest.mark.parametrize("k", [1, 4])
def test_projection_matches_dense_svd(method, k):
    x = _random(np.random.default_rng(0))
    v = top_right_singular_vectors(sp.csr_array(x), k, jax.random.key(0), method=method)
    _, s, vt = np.linalg.svd(x)
    assert s[k - 1] > s[k] * 1.01  # a gap: the subspace is well defined
    np.testing.assert_allclose(v @ v.T, vt[:k].T @ vt[:k], atol=1e-8)
    np.testing.assert_allclose(v.T @ v, np.eye(k), atol=1e-10)


def test_arpack_is_deterministic_given_the_key():
    x = sp.csr_array(_random(np.random.default_rng(1)))
    a = top_right_singular_vectors(x, 3, jax.random.key(5), method="arpack")
    b = top_right_singular_vectors(x, 3, jax.random.key(5), method="arpack")
    np.testing.assert_array_equal(a, b)


def test_rank_one_matrix_is_reconstructed_by_hand():
    # X = u v^T with v = (1, 1, 0, 1): one factor reproduces every row exactly.
    x = np.outer([1, 0, 1, 1, 0], [1, 1, 0, 1]).astype(np.float32)
    users, items = np.nonzero(x)
    m = InteractionMatrix.from_arrays(users, items, shape=x.shape)
    model = models.get("puresvd").build(factors=1)
    params = model.fit(FitData(m), jax.random.key(0))
    batch = UserBatch(jnp.arange(5, dtype=jnp.int32), jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(jax.jit(model.score)(params, batch)), x, atol=1e-6)


def test_scores_project_rows_on_the_top_subspace():
    x = _random(np.random.default_rng(2), (40, 15))
    users, items = np.nonzero(x)
    m = InteractionMatrix.from_arrays(users, items, shape=x.shape)
    model = models.get("puresvd").build(factors=5)
    params = model.fit(FitData(m), jax.random.key(0))
    _, _, vt = np.linalg.svd(x)
    batch = UserBatch(jnp.arange(40, dtype=jnp.int32), jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(
        np.asarray(jax.jit(model.score)(params, batch)), x @ vt[:5].T @ vt[:5], atol=1e-5
    )


def test_bad_sizes_raise():
    with pytest.raises(ConfigError, match="factors"):
        models.get("puresvd").build(factors=0)
    x = sp.csr_array(_random(np.random.default_rng(3), (6, 5)))
    with pytest.raises(DataError, match="1 <= k < 5"):
        top_right_singular_vectors(x, 5, jax.random.key(0), method="arpack")
    with pytest.raises(DataError, match="1 <= k <= 5"):
        top_right_singular_vectors(x, 6, method="gram")
