"""torch_adam: Adam with torch's L2 weight decay (added to the gradient), against numpy."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from diffrec_jax.models.layers import torch_adam


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
