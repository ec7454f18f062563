"""torch_adam (Adam with torch's L2 weight decay, added to the gradient) and dropout, against
numpy."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffrec_jax.nn.layers import dropout, dropout_keep, torch_adam


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_torch_adam_matches_numpy(weight_decay):
    rng = np.random.default_rng(0)
    p = rng.standard_normal(5)
    grads = [rng.standard_normal(5) for _ in range(3)]
    lr, b1, b2, eps = 1e-2, 0.9, 0.98, 1e-8
    tx = torch_adam(lr, weight_decay, b2=b2)
    params = jnp.asarray(p, jnp.float32)
    state = tx.init(params)
    m = v = np.zeros(5)
    ref = p.copy()
    for t, g in enumerate(grads, start=1):
        updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
        params = params + updates
        g = g + weight_decay * ref  # torch: L2 term added to the gradient
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        ref = ref - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    np.testing.assert_allclose(params, ref, rtol=1e-5, atol=1e-6)


def np_dropout_keep(words: np.ndarray, last: int, rate: float) -> np.ndarray:
    """Each uint32 word gives two 16-bit draws (low half first); keep a draw >= rate * 2^16."""
    w = words.astype(np.uint64)
    halves = np.stack([w & 0xFFFF, w >> 16], axis=-1).reshape(*words.shape[:-1], -1)[..., :last]
    return halves >= round(rate * 65536)


@pytest.mark.parametrize("shape", [(7, 6), (3, 4, 5), (9,)])
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.3])
def test_dropout_matches_numpy(shape, rate):
    key = jax.random.key(3)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    words = np.asarray(jax.random.bits(key, (*shape[:-1], (shape[-1] + 1) // 2), jnp.uint32))
    keep = np_dropout_keep(words, shape[-1], rate)
    np.testing.assert_array_equal(np.asarray(dropout_keep(key, shape, rate)), keep)
    q = round(rate * 65536) / 65536
    want = np.where(keep, x.astype(np.float64) / (1 - q), 0.0)
    np.testing.assert_allclose(np.asarray(dropout(key, jnp.asarray(x), rate)), want, rtol=1e-6)


def test_dropout_rate_expectation_and_edge_cases():
    key = jax.random.key(0)
    x = jnp.ones((400, 501), jnp.float32)  # odd last axis: the last word's high half unused
    y = np.asarray(dropout(key, x, 0.1))
    zero = (y == 0).mean()
    assert abs(zero - 0.1) < 5 * math.sqrt(0.09 / y.size), zero
    assert abs(y.mean() - 1.0) < 0.01  # inverted dropout keeps the expectation
    assert dropout(key, x, 0.0) is x
    assert dropout_keep(key, (), 0.5).shape == ()
    # a rate just below 1 rounds to 65535 / 65536, not to 1: the scale stays finite
    kept = np.asarray(dropout(key, x, 0.999999))
    assert np.isfinite(kept).all() and set(np.unique(kept)) <= {0.0, 65536.0}
    # jit-able, and deterministic given the key
    np.testing.assert_array_equal(jax.jit(lambda k: dropout(k, x, 0.3))(key), dropout(key, x, 0.3))
