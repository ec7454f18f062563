"""GF-CF against its formula written with dense numpy float64 and numpy's SVD."""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from diffrec_jax import models
from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.errors import ConfigError
from diffrec_jax.models.gfcf import gfcf_weights
from diffrec_jax.protocol import FitData, UserBatch

# The package exports the factory `gfcf`, which shadows the submodule attribute.
gfcf_module = importlib.import_module("diffrec_jax.models.gfcf")


def reference_weights(x, alpha, cutoff):
    """R~ = D_u^-1/2 R D_i^-1/2; W = R~^T R~ + alpha D_i^-1/2 V V^T D_i^1/2 (zero degrees -> 0)."""
    x = np.asarray(x, np.float64)
    du, di = x.sum(axis=1), x.sum(axis=0)
    du_is = np.where(du > 0, 1 / np.sqrt(np.where(du > 0, du, 1)), 0.0)
    di_is = np.where(di > 0, 1 / np.sqrt(np.where(di > 0, di, 1)), 0.0)
    r = du_is[:, None] * x * di_is[None, :]
    _, _, vt = np.linalg.svd(r)
    v = vt[:cutoff].T
    ideal = di_is[:, None] * (v @ v.T) * np.sqrt(di)[None, :]
    return r.T @ r + alpha * ideal


def test_identity_graph_by_hand():
    # R = I: every degree is 1, R~ = I, the linear filter is I and so is V V^T at full cutoff.
    w = gfcf_weights(sp.csr_array(np.eye(3)), alpha=0.3, cutoff=3)
    np.testing.assert_allclose(w, 1.3 * np.eye(3), atol=1e-6)


@pytest.mark.parametrize("alpha,cutoff", [(0.0, 1), (0.3, 3), (1.0, 6)])
def test_matches_dense_formula(alpha, cutoff):
    rng = np.random.default_rng(0)
    x = np.where(rng.random((25, 10)) < 0.4, rng.integers(1, 4, (25, 10)), 0).astype(np.float64)
    x[:, 7] = 0.0  # an item without users
    x[3] = 0.0  # a user without items
    s = np.linalg.svd(x / np.sqrt(np.maximum(x.sum(1, keepdims=True), 1)), compute_uv=False)
    assert s.size > cutoff
    got = gfcf_weights(sp.csr_array(x), alpha=alpha, cutoff=cutoff)
    np.testing.assert_allclose(got, reference_weights(x, alpha, cutoff), atol=2e-6)


def test_arpack_path_matches(monkeypatch):
    rng = np.random.default_rng(1)
    x = (rng.random((30, 12)) < 0.4).astype(np.float64)
    monkeypatch.setattr(gfcf_module, "GRAM_MAX_COLUMNS", 0)
    got = gfcf_weights(sp.csr_array(x), alpha=0.5, cutoff=4, key=jax.random.key(0))
    np.testing.assert_allclose(got, reference_weights(x, 0.5, 4), atol=2e-6)


def test_model_scores_raw_rows():
    rng = np.random.default_rng(2)
    x = (rng.random((20, 9)) < 0.4).astype(np.float32)
    users, items = np.nonzero(x)
    m = InteractionMatrix.from_arrays(users, items, shape=x.shape)
    model = models.get("gfcf").build(alpha=0.3, cutoff=4)
    params = model.fit(FitData(m), jax.random.key(0))
    batch = UserBatch(jnp.arange(20, dtype=jnp.int32), jnp.asarray(x))
    np.testing.assert_allclose(
        np.asarray(jax.jit(model.score)(params, batch)), x @ reference_weights(x, 0.3, 4), atol=1e-5
    )


@pytest.mark.parametrize("bad,match", [({"alpha": -0.1}, "alpha"), ({"cutoff": 0}, "cutoff")])
def test_bad_hyperparameters_raise(bad, match):
    with pytest.raises(ConfigError, match=match):
        models.get("gfcf").build(**bad)
