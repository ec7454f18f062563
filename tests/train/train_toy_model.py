"""A tiny Trainable for the training-loop tests: a one-layer denoising autoencoder.

Multinomial likelihood (as MultVAE) on dropout-corrupted rows; its model state counts the real
rows and the steps it has seen, so the tests can check padding and state threading.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.sparse as sp

from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.protocol import FitData, Trainable, mean_over_rows, row_weights
from diffrec_jax.train import TrainConfig


@jax.custom_vjp
def _poison_gradient(x, on):
    """The identity on `x`, whose gradient is NaN where `on` is True."""
    return x


def _poison_fwd(x, on):
    return x, on


def _poison_bwd(on, g):
    return jnp.where(on, jnp.nan, 1.0) * g, None


_poison_gradient.defvjp(_poison_fwd, _poison_bwd)


def toy_autoencoder(
    latent: int = 8,
    lr: float = 1e-2,
    dropout: float = 0.5,
    nan_from_step: int | None = None,
    nan_grad_at_step: int | None = None,
) -> Trainable:
    """A Trainable; with `nan_from_step` its loss becomes NaN from that global step on; with
    `nan_grad_at_step` the gradient of that step is NaN while its loss stays finite."""

    def init(key, n_items):
        k_enc, k_dec = jax.random.split(key)
        params = {
            "enc": 0.1 * jax.random.normal(k_enc, (n_items, latent)),
            "dec": 0.1 * jax.random.normal(k_dec, (latent, n_items)),
            "bias": jnp.zeros(n_items),
        }
        model_state = {"rows_seen": jnp.zeros((), jnp.int32), "steps": jnp.zeros((), jnp.int32)}
        return params, model_state

    def logits(params, x):
        return jnp.tanh(x @ params["enc"]) @ params["dec"] + params["bias"]

    def loss(params, model_state, batch, key, info):
        keep = jax.random.bernoulli(key, 1.0 - dropout, batch.rows.shape)
        x = batch.rows * keep / (1.0 - dropout)
        out = logits(params, x)
        if nan_grad_at_step is not None:
            out = _poison_gradient(out, info.step == nan_grad_at_step)
        nll = -jnp.sum(jax.nn.log_softmax(out) * batch.rows, axis=1)
        value = mean_over_rows(nll, batch)
        if nan_from_step is not None:
            value = value + jnp.where(info.step >= nan_from_step, jnp.nan, 0.0)
        w = row_weights(batch)
        new_state = {
            "rows_seen": model_state["rows_seen"] + jnp.sum(w).astype(jnp.int32),
            "steps": model_state["steps"] + 1,
        }
        # "kept" counts the kept entries of the real rows: an integer, exact whatever the
        # reduction order, so it pins the random stream down across device counts.
        aux = {
            "keep_rate": mean_over_rows(keep.mean(axis=1), batch),
            "kept": jnp.sum(keep * w[:, None]).astype(jnp.float32),
            "epoch": info.epoch.astype(jnp.float32),
        }
        return value, (new_state, aux)

    def score(params, batch):
        return logits(params, batch.rows)

    return Trainable(init=init, loss=loss, score=score, optimizer=lambda: optax.adam(lr))


def toy_data(n_users: int = 50, n_items: int = 80, density: float = 0.2, seed: int = 0) -> FitData:
    """Random train and disjoint valid interactions with some item structure."""
    rng = np.random.default_rng(seed)
    # Two user groups preferring two halves of the catalogue, so the model can learn something.
    group = rng.integers(0, 2, n_users)
    pref = np.where(
        (np.arange(n_items)[None, :] < n_items // 2) == (group[:, None] == 0),
        3 * density,
        density / 3,
    )
    dense = rng.random((n_users, n_items)) < pref
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = True  # no empty user
    is_valid = dense & (rng.random((n_users, n_items)) < 0.25)
    train, valid = dense & ~is_valid, is_valid

    def matrix(m):
        return InteractionMatrix(sp.csr_array(m.astype(np.float32)))

    return FitData(matrix(train), matrix(valid))


# -- helpers of the checkpoint and fault tests --------------------------------------------------

RESUME_CONFIG = TrainConfig(
    batch_size=16,
    max_epochs=4,
    eval_every=1,
    patience=None,
    seed=8,
    eval_batch_size=16,
    checkpoint_every=1,
    keep_checkpoints=5,
)
"""50 toy users in batches of 16: 4 steps per epoch (steps 0-3 are epoch 1, 4-7 epoch 2, ...),
validated and checkpointed after every epoch, every checkpoint kept."""


def assert_trees_equal(a, b) -> None:
    """Same structure and bitwise-equal leaves."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def trajectory(result) -> list:
    """(epoch, loss, validation metrics, aux) of every epoch of a TrainResult."""
    return [(r.epoch, r.loss, r.metrics, r.aux) for r in result.history]
