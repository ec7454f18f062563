"""iALS: the blocked half-steps against per-user normal equations in numpy float64."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from diffrec_jax import models
from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.errors import ConfigError
from diffrec_jax.models.ials import (
    confidence_values,
    half_step,
    ials_factors,
    make_blocks,
    objective,
)
from diffrec_jax.protocol import FitData, UserBatch


def _counts(rng, shape, density):
    return np.where(rng.random(shape) < density, rng.integers(1, 4, shape), 0).astype(np.float64)


def reference_half_step(dense, y, reg, conf_dense):
    """x_u = (Y^T C_u Y + reg I)^-1 Y^T C_u p_u, one user at a time (float64)."""
    y = np.asarray(y, np.float64)
    pref = (dense != 0).astype(np.float64)
    f = y.shape[1]
    return np.stack(
        [
            np.linalg.solve(
                y.T @ (conf_dense[u][:, None] * y) + reg * np.eye(f),
                y.T @ (conf_dense[u] * pref[u]),
            )
            for u in range(dense.shape[0])
        ]
    )


def _dense_conf(dense, alpha, kind="linear", epsilon=1.0):
    c = np.ones_like(dense)
    nz = dense != 0
    c[nz] = confidence_values(dense[nz], alpha=alpha, kind=kind, epsilon=epsilon)
    return c


@pytest.mark.parametrize(
    "segment,rows_per_block,shape,density,f",
    [
        (1, 1, (30, 20), 0.3, 4),  # one entry per segment, one row per block
        (2, 3, (9, 40), 0.6, 3),  # long rows over many segments
        (4, None, (25, 6), 0.1, 2),  # short rows, one block
        (None, 7, (30, 20), 0.3, 4),  # default segment length, several blocks
    ],
)
def test_cholesky_half_step_matches_normal_equations(segment, rows_per_block, shape, density, f):
    rng = np.random.default_rng(0)
    dense = _counts(rng, shape, density)
    dense[1] = 0.0  # a row without entries gets a zero factor
    m = sp.csr_array(dense)
    reg, alpha = 0.3, 2.0
    blocks = make_blocks(
        m, confidence_values(m.data, alpha=alpha), f, segment=segment, rows_per_block=rows_per_block
    )
    y = rng.standard_normal((shape[1], f)).astype(np.float32)
    x = half_step(jnp.zeros((shape[0], f)), jnp.asarray(y), blocks, jnp.float32(reg))
    expected = reference_half_step(dense, y, reg, _dense_conf(dense, alpha))
    expected[1] = 0.0
    np.testing.assert_allclose(np.asarray(x), expected, rtol=1e-4, atol=1e-5)


def test_cg_with_f_steps_solves_exactly_and_warm_starts():
    rng = np.random.default_rng(1)
    dense = _counts(rng, (20, 15), 0.4)
    m = sp.csr_array(dense)
    f, reg, alpha = 3, 0.5, 1.5
    blocks = make_blocks(m, confidence_values(m.data, alpha=alpha), f, segment=2)
    y = jnp.asarray(rng.standard_normal((15, f)), jnp.float32)
    x0 = jnp.asarray(rng.standard_normal((20, f)), jnp.float32)
    expected = reference_half_step(dense, np.asarray(y), reg, _dense_conf(dense, alpha))
    # CG is exact after f steps (in exact arithmetic)...
    x = half_step(x0, y, blocks, jnp.float32(reg), solver="cg", cg_steps=f)
    np.testing.assert_allclose(np.asarray(x), expected, rtol=1e-3, atol=1e-4)
    # ...and zero steps return the warm start.
    x = half_step(x0, y, blocks, jnp.float32(reg), solver="cg", cg_steps=0)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(x0))


@pytest.mark.parametrize("kind", ["linear", "log"])
def test_objective_matches_dense_sum(kind):
    rng = np.random.default_rng(2)
    dense = _counts(rng, (12, 9), 0.4)
    m = sp.csr_array(dense)
    conf = confidence_values(m.data, alpha=3.0, kind=kind, epsilon=0.5)
    x, y = rng.standard_normal((12, 2)), rng.standard_normal((9, 2))
    c = _dense_conf(dense, 3.0, kind, 0.5)
    expected = np.sum(c * ((dense != 0) - x @ y.T) ** 2) + 0.7 * (np.sum(x**2) + np.sum(y**2))
    assert objective(x, y, m, conf, 0.7) == pytest.approx(expected, rel=1e-12)


def test_confidence_by_hand():
    np.testing.assert_allclose(confidence_values(np.array([1.0, 3.0]), alpha=2.0), [3.0, 7.0])
    np.testing.assert_allclose(
        confidence_values(np.array([1.0, 3.0]), alpha=2.0, kind="log", epsilon=0.5),
        [1 + 2 * np.log(3.0), 1 + 2 * np.log(7.0)],
    )


def test_exact_als_never_increases_the_objective():
    rng = np.random.default_rng(3)
    dense = _counts(rng, (40, 25), 0.25)
    m = sp.csr_array(dense)
    conf = confidence_values(m.data, alpha=4.0)
    losses = []
    for iterations in (1, 2, 3, 4, 5):
        x, y = ials_factors(
            m, factors=4, reg=0.1, alpha=4.0, iterations=iterations, key=jax.random.key(0)
        )
        losses.append(objective(np.asarray(x), np.asarray(y), m, conf, 0.1))
    assert all(b <= a * (1 + 1e-6) for a, b in zip(losses, losses[1:], strict=False)), losses
    assert losses[-1] < 0.9 * losses[0]


def test_model_scores_are_user_times_item_factors_and_deterministic():
    rng = np.random.default_rng(4)
    dense = _counts(rng, (15, 10), 0.4)
    users, items = np.nonzero(dense)
    m = InteractionMatrix.from_arrays(users, items, shape=dense.shape)
    model = models.get("ials").build(factors=3, iterations=3)
    params = model.fit(FitData(m), jax.random.key(7))
    again = model.fit(FitData(m), jax.random.key(7))
    np.testing.assert_array_equal(
        np.asarray(params["item_factors"]), np.asarray(again["item_factors"])
    )
    batch = UserBatch(jnp.asarray([4, 0], jnp.int32), jnp.zeros((2, 10), jnp.float32))
    expected = np.asarray(params["user_factors"])[[4, 0]] @ np.asarray(params["item_factors"]).T
    np.testing.assert_allclose(np.asarray(jax.jit(model.score)(params, batch)), expected, rtol=1e-6)


@pytest.mark.filterwarnings("ignore:OpenBLAS is configured")
def test_matches_implicit_exact_solver_from_the_same_start():
    implicit_als = pytest.importorskip("implicit.cpu.als")
    rng = np.random.default_rng(5)
    dense = _counts(rng, (30, 20), 0.3)
    m = sp.csr_array(dense)
    f, reg, alpha = 4, 0.1, 3.0
    y0 = 0.1 * rng.standard_normal((20, f)).astype(np.float32)
    # implicit takes the confidence matrix C = 1 + alpha R; start both from the same item
    # factors (implicit's first half-step solves the users and ignores their start).
    c = sp.csr_matrix(
        (confidence_values(m.data, alpha=alpha).astype(np.float32), m.indices, m.indptr),
        shape=m.shape,
    )
    theirs = implicit_als.AlternatingLeastSquares(
        factors=f, regularization=reg, alpha=1.0, iterations=2, use_cg=False, random_state=0
    )
    theirs.user_factors = np.zeros((30, f), np.float32)
    theirs.item_factors = y0.copy()
    theirs.fit(c, show_progress=False)
    ours_blocks = make_blocks(m, confidence_values(m.data, alpha=alpha), f)
    item_blocks = make_blocks(sp.csr_array(c.T.tocsr()), sp.csr_array(c.T.tocsr()).data, f)
    x, y = jnp.zeros((30, f)), jnp.asarray(y0)
    for _ in range(2):
        x = half_step(x, y, ours_blocks, jnp.float32(reg))
        y = half_step(y, x, item_blocks, jnp.float32(reg))
    np.testing.assert_allclose(np.asarray(x), theirs.user_factors, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(np.asarray(y), theirs.item_factors, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"factors": 0}, "factors"),
        ({"reg": -1.0}, "reg"),
        ({"confidence": "exp"}, "confidence"),
        ({"solver": "lu"}, "solver"),
        ({"epsilon": 0.0}, "epsilon"),
    ],
)
def test_bad_hyperparameters_raise(bad, match):
    with pytest.raises(ConfigError, match=match):
        models.get("ials").build(**bad)
