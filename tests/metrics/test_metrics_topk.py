"""The jit-compiled masked top-K: tie rule, exclusion, padding-free shapes."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from diffrec_jax.metrics import default_batch_size, masked_top_k


@pytest.mark.parametrize("n_items,k", [(7, 7), (50, 1), (50, 20), (300, 300), (2810, 20)])
def test_tie_rule_is_stable_argsort(n_items, k):
    rng = np.random.default_rng(n_items + k)
    # Integer-valued scores (many ties) with some -0.0 among the zeros.
    s = rng.integers(-2, 3, (16, n_items)).astype(np.float32) * rng.choice(
        np.array([-1.0, 1.0], np.float32), (16, n_items)
    )
    assert np.signbit(s[s == 0]).any() and not np.signbit(s[s == 0]).all()
    items, valid, has_nan = masked_top_k(jnp.asarray(s), jnp.zeros(s.shape, bool), k=k)
    ref = np.argsort(-s, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(np.asarray(items), ref)
    assert np.asarray(valid).all() and not np.asarray(has_nan).any()
    assert items.dtype == jnp.int32


def test_exclusion_and_invalid_positions():
    rng = np.random.default_rng(0)
    n_items, k = 12, 12
    s = rng.integers(0, 3, (5, n_items)).astype(np.float32)
    excl = rng.random((5, n_items)) < 0.5
    excl[0] = True  # nothing rankable
    excl[1] = False
    items, valid, _ = masked_top_k(jnp.asarray(s), jnp.asarray(excl), k=k)
    items, valid = np.asarray(items), np.asarray(valid)
    for u in range(5):
        n_rankable = int((~excl[u]).sum())
        np.testing.assert_array_equal(valid[u], np.arange(k) < n_rankable)
        ref = np.where(excl[u], -np.inf, s[u])
        np.testing.assert_array_equal(
            items[u, :n_rankable], np.argsort(-ref, kind="stable")[:n_rankable]
        )
        assert not excl[u, items[u, :n_rankable]].any()


def test_model_minus_inf_ranks_above_excluded_items():
    s = np.array([[-np.inf, 1.0, -np.inf, 2.0]], np.float32)
    excl = np.array([[False, False, True, False]])
    items, valid, _ = masked_top_k(jnp.asarray(s), jnp.asarray(excl), k=4)
    np.testing.assert_array_equal(np.asarray(items), [[3, 1, 0, 2]])
    np.testing.assert_array_equal(np.asarray(valid), [[True, True, True, False]])


def test_nan_rows_are_flagged():
    s = np.zeros((3, 5), np.float32)
    s[1, 4] = np.nan
    _, _, has_nan = masked_top_k(jnp.asarray(s), jnp.zeros(s.shape, bool), k=2)
    np.testing.assert_array_equal(np.asarray(has_nan), [False, True, False])


@pytest.mark.parametrize("n_items,expected", [(1, 1024), (2810, 1024), (40_000, 419), (2**25, 1)])
def test_default_batch_size(n_items, expected):
    b = default_batch_size(n_items)
    assert b == expected
    assert b * n_items <= 2**24 or b == 1
