"""P3alpha and RP3beta against a hand-computed walk and a plain float64 loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from diffrec_jax import models
from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.errors import ConfigError
from diffrec_jax.models.graph import random_walk_weights
from diffrec_jax.protocol import FitData, UserBatch


def _matrix(dense: np.ndarray) -> InteractionMatrix:
    users, items = np.nonzero(dense)
    return InteractionMatrix.from_arrays(
        users, items, shape=dense.shape, values=dense[users, items]
    )


def reference_weights(x, alpha, beta, topk, normalize):
    """The RecSys2019 recipe one entry at a time, in float64."""
    x = np.asarray(x, np.float64)
    n_users, n_items = x.shape
    count = (x != 0).sum(axis=0)
    w = np.zeros((n_items, n_items))
    for i in range(n_items):
        for j in range(n_items):
            if i == j:
                continue
            for u in range(n_users):
                if x[u, i] != 0 and x[u, j] != 0:
                    p_iu = (1.0 / count[i]) ** alpha
                    p_uj = (x[u, j] / x[u].sum()) ** alpha
                    w[i, j] += p_iu * p_uj
            if count[j]:
                w[i, j] /= count[j] ** beta
    rows = np.zeros_like(w)
    for i in range(n_items):
        keep = np.argsort(-w[i], kind="stable")[:topk]
        rows[i, keep] = w[i, keep]
    if normalize:
        sums = rows.sum(axis=1, keepdims=True)
        rows = np.divide(rows, sums, out=np.zeros_like(rows), where=sums > 0)
    out = np.zeros_like(rows)
    for j in range(n_items):
        keep = np.argsort(-rows[:, j], kind="stable")[:topk]
        out[keep, j] = rows[keep, j]
    return out


def test_p3alpha_and_rp3beta_by_hand():
    # u0: {0, 1}, u1: {0, 2}, u2: {1}. Walk i -> u (1/|U_i|) -> j (1/|I_u|).
    x = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 0]], np.float32)
    p3 = random_walk_weights(sp.csr_array(x), alpha=1.0, topk=10, normalize=False)
    expected = np.array([[0.0, 0.25, 0.25], [0.25, 0.0, 0.0], [0.5, 0.0, 0.0]])
    np.testing.assert_allclose(p3, expected, rtol=1e-6)
    # RP3beta, beta = 1: columns divided by the target's popularity (2, 2, 1).
    rp3 = random_walk_weights(sp.csr_array(x), alpha=1.0, beta=1.0, topk=10, normalize=False)
    np.testing.assert_allclose(rp3, expected / np.array([2.0, 2.0, 1.0]), rtol=1e-6)


@pytest.mark.parametrize(
    "alpha,beta,topk,normalize",
    [
        (1.0, 0.0, 100, False),
        (0.6, 0.0, 3, True),
        (1.3, 0.4, 4, True),
        (0.8, 1.7, 2, False),
        (0.0, 0.5, 5, True),
    ],
)
def test_weights_match_reference_loop(alpha, beta, topk, normalize):
    rng = np.random.default_rng(0)
    x = np.where(rng.random((20, 9)) < 0.35, rng.uniform(0.5, 4.0, (20, 9)), 0.0)
    x[:, 6] = 0.0  # an item without users
    x[4] = 0.0  # a user without items
    got = random_walk_weights(
        sp.csr_array(x), alpha=alpha, beta=beta, topk=topk, normalize=normalize
    )
    expected = reference_weights(x, alpha, beta, topk, normalize)
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-8)


@pytest.mark.parametrize(
    "name,hparams", [("p3alpha", {"topk": 3}), ("rp3beta", {"topk": 4, "beta": 0.3})]
)
def test_model_scores_are_rows_times_weights(name, hparams):
    rng = np.random.default_rng(1)
    # Weighted entries: no ties at the top-k boundary (binary data tie often).
    x = np.where(rng.random((15, 8)) < 0.4, rng.uniform(0.5, 3.0, (15, 8)), 0.0)
    x = x.astype(np.float32)
    model = models.get(name).build(**hparams)
    params = model.fit(FitData(_matrix(x)), jax.random.key(0))
    spec = {**models.get(name).defaults, **hparams}
    w = reference_weights(x, spec["alpha"], spec.get("beta", 0.0), spec["topk"], spec["normalize"])
    batch = UserBatch(jnp.arange(15, dtype=jnp.int32), jnp.asarray(x))
    np.testing.assert_allclose(
        np.asarray(jax.jit(model.score)(params, batch)), x @ w, rtol=2e-5, atol=1e-7
    )


@pytest.mark.parametrize(
    "bad,match",
    [({"topk": 0}, "topk"), ({"alpha": -1.0}, "alpha"), ({"beta": float("inf")}, "beta")],
)
def test_bad_hyperparameters_raise(bad, match):
    with pytest.raises(ConfigError, match=match):
        models.get("rp3beta").build(**bad)
