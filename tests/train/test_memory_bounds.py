"""The training loop never queues more than a few update steps ahead of the device.

Dispatch is asynchronous: a host loop that only read the losses at the end of the epoch would
densify and queue every [batch, n_items] input of the epoch before the device finished the
first steps (41 GB for one epoch of Amazon-book at batch 400). Here every update step is made
slow with extra device work, the compiled step is wrapped to keep its loss outputs, and the
source counts, whenever it builds a batch, the dispatched steps whose loss is not ready yet.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from train_toy_model import toy_autoencoder, toy_data

from diffrec_jax.train import DenseRows, TrainConfig, train
from diffrec_jax.train.loop import MAX_STEPS_IN_FLIGHT


def test_at_most_a_few_steps_are_in_flight(monkeypatch):
    data = toy_data(n_users=120, seed=4)
    toy = toy_autoencoder()

    def slow_loss(params, state, batch, key, info):
        # ~1.4 GFLOP of device work per step, feeding the loss (times 0).
        m = jnp.full((192, 192), 1e-3) + jnp.sum(batch.rows) * 1e-9
        m = jax.lax.fori_loop(0, 100, lambda _, x: jnp.tanh(x @ x), m)
        value, rest = toy.loss(params, state, batch, key, info)
        return value + 0.0 * m[0, 0], rest

    losses, in_flight = [], []
    jit = jax.jit

    def recording_jit(fn, **kwargs):
        compiled = jit(fn, **kwargs)
        if fn.__name__ != "train_step":
            return compiled

        def step(*args):
            state, (loss, aux) = compiled(*args)
            losses.append(loss)
            return state, (loss, aux)

        return step

    class CountingRows(DenseRows):
        def batch(self, indices, weights):
            in_flight.append(sum(not loss.is_ready() for loss in losses))
            return super().batch(indices, weights)

    monkeypatch.setattr(jax, "jit", recording_jit)
    config = TrainConfig(batch_size=10, max_epochs=2, patience=None, eval_every=2, seed=1)
    result = train(toy._replace(loss=slow_loss), data, config, source=CountingRows(data.train))
    assert len(in_flight) == len(losses) == 2 * 12 and len(result.history) == 2
    assert max(in_flight) <= MAX_STEPS_IN_FLIGHT
