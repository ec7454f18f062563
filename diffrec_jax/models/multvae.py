r"""Mult-VAE: a variational autoencoder with a multinomial likelihood (Liang et al. 2018).

For ``dims = (d_1, ..., d_m)`` (latent size first, as the original's ``p_dims`` without
n_items, and as DiffRec's `dims`) the encoder is

.. math::
   n_{items} \to d_m \to \dots \to d_2 \to 2 d_1 \quad (\mu, \log\sigma^2),

and the decoder mirrors it, :math:`d_1 \to d_2 \to \dots \to d_m \to n_{items}`; tanh after
every layer but the last of each. The default ``dims=(200, 600)`` is the paper's
[n_items -> 600 -> 200 -> 600 -> n_items]. The input row is L2-normalised, then dropped out
(inverted dropout, rate `dropout`) in training.

Training minimises, per user,

.. math::
   -\sum_i x_{ui} \log \mathrm{softmax}(f(z_u))_i
   + \beta \cdot \tfrac12 \sum_k (-\log\sigma_k^2 + \sigma_k^2 + \mu_k^2 - 1),
   \qquad z_u = \mu + \sigma \epsilon,

averaged over the batch's real rows, plus ``l2_reg * sum(w ** 2)`` over the weight matrices
(the original's ``lam``, 0 for the VAE). :math:`\beta` anneals per optimisation step:
``beta = min(anneal_cap, step / total_anneal_steps)`` (``anneal_cap`` when
``total_anneal_steps == 0``), step counted from 0 as the original's ``update_count``. Scores
are the decoder's logits at :math:`z = \mu` (no dropout, no sampling).

Initialisation as the original: Glorot-uniform weights, biases from a normal with standard
deviation 0.001 truncated at two standard deviations. Optimiser: Adam.

References:
  Liang, Krishnan, Hoffman, Jebara, "Variational Autoencoders for Collaborative Filtering",
  WWW 2018 (code: github.com/dawenl/vae_cf).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from diffrec_jax.errors import ConfigError
from diffrec_jax.nn import layers
from diffrec_jax.protocol import (
    StepInfo,
    Trainable,
    UserBatch,
    mean_over_rows,
)

Params = dict[str, Any]

BIAS_STD = 0.001
"""Standard deviation of the (truncated normal) bias initialisation, as the original."""


def encoder_sizes(n_items: int, dims: Sequence[int]) -> list[int]:
    """Encoder layer sizes: [n_items, d_m, ..., d_2, 2 d_1] (mean and log-variance)."""
    dims = [int(d) for d in dims]
    return [n_items, *dims[:0:-1], 2 * dims[0]]


def decoder_sizes(n_items: int, dims: Sequence[int]) -> list[int]:
    """Decoder layer sizes: [d_1, d_2, ..., d_m, n_items]."""
    return [*(int(d) for d in dims), n_items]


def _init_layer(key: jax.Array, d_in: int, d_out: int) -> layers.Dense:
    key_w, key_b = jax.random.split(key)
    limit = math.sqrt(6.0 / (d_in + d_out))
    return {
        "w": jax.random.uniform(key_w, (d_in, d_out), jnp.float32, -limit, limit),
        "b": BIAS_STD * jax.random.truncated_normal(key_b, -2.0, 2.0, (d_out,), jnp.float32),
    }


def init_vae(key: jax.Array, n_items: int, dims: Sequence[int] = (200, 600)) -> Params:
    """Mult-VAE parameters: ``{"encoder": [dense, ...], "decoder": [dense, ...]}`` float32.

    Dense layers as :mod:`diffrec_jax.nn.layers` (``{"w": [d_in, d_out], "b": [d_out]}``),
    sizes from :func:`encoder_sizes` and :func:`decoder_sizes`. Compiled (one XLA program rather
    than one per random draw).
    """
    return _init_vae(key, int(n_items), tuple(int(d) for d in dims))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _init_vae(key: jax.Array, n_items: int, dims: tuple[int, ...]) -> Params:
    key_enc, key_dec = jax.random.split(key)
    out = {}
    for name, k, sizes in (
        ("encoder", key_enc, encoder_sizes(n_items, dims)),
        ("decoder", key_dec, decoder_sizes(n_items, dims)),
    ):
        keys = jax.random.split(k, len(sizes) - 1)
        out[name] = [
            _init_layer(kk, a, b) for kk, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
        ]
    return out


def encode(params: Params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Posterior parameters (mu, logvar), each [B, d_1], of an encoder input.

    Args:
      params: from :func:`init_vae`.
      x: [B, n_items] float32 encoder input: the L2-normalised rows (dropped out in training).
    """
    h = layers.mlp(params["encoder"], x)
    d = h.shape[-1] // 2
    return h[:, :d], h[:, d:]


def decode(params: Params, z: jax.Array) -> jax.Array:
    """Logits over the items: [B, d_1] latent -> [B, n_items]."""
    return layers.mlp(params["decoder"], z)


def kl_per_row(mu: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mu, exp(logvar)) || N(0, I)) of every row: [B, d] -> [B]."""
    return 0.5 * jnp.sum(-logvar + jnp.exp(logvar) + mu**2 - 1.0, axis=-1)


def multinomial_nll(logits: jax.Array, rows: jax.Array) -> jax.Array:
    """-sum_i x_i log softmax(logits)_i of every row: [B, n_items] -> [B]."""
    return -jnp.sum(jax.nn.log_softmax(logits, axis=-1) * rows, axis=-1)


def anneal(step: jax.Array, anneal_cap: float, total_anneal_steps: int) -> jax.Array:
    """KL weight beta = min(anneal_cap, step / total_anneal_steps); anneal_cap if total is 0."""
    if total_anneal_steps == 0:
        return jnp.float32(anneal_cap)
    return jnp.minimum(jnp.float32(anneal_cap), step.astype(jnp.float32) / total_anneal_steps)


def _validate(*, lr, dims, dropout, anneal_cap, total_anneal_steps, l2_reg) -> tuple[int, ...]:
    if not lr > 0:
        raise ConfigError(f"MultVAE needs lr > 0, got {lr=}")
    if (
        isinstance(dims, str | bytes)
        or not isinstance(dims, Sequence)
        or not dims
        or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims)
    ):
        raise ConfigError(
            f"MultVAE dims must be a non-empty sequence of positive ints, got {dims=}"
        )
    if not 0 <= dropout < 1:
        raise ConfigError(f"MultVAE needs 0 <= dropout < 1, got {dropout=}")
    if not anneal_cap >= 0:
        raise ConfigError(f"MultVAE needs anneal_cap >= 0, got {anneal_cap=}")
    if (
        isinstance(total_anneal_steps, bool)
        or not isinstance(total_anneal_steps, int)
        or total_anneal_steps < 0
    ):
        raise ConfigError(
            f"MultVAE needs an int total_anneal_steps >= 0, got {total_anneal_steps=}"
        )
    if not l2_reg >= 0:
        raise ConfigError(f"MultVAE needs l2_reg >= 0, got {l2_reg=}")
    return tuple(dims)


def multvae(
    lr: float = 1e-3,
    dims: Sequence[int] = (200, 600),
    dropout: float = 0.5,
    anneal_cap: float = 0.2,
    total_anneal_steps: int = 200_000,
    l2_reg: float = 0.0,
) -> Trainable:
    """Mult-VAE as a :class:`~diffrec_jax.protocol.Trainable` (maths in the module docstring).

    Defaults are the original's (ML-20M notebook; batch size 500 is the loop's business).

    Args:
      lr: Adam learning rate.
      dims: (latent, hidden...) sizes, e.g. (200, 600) for n_items -> 600 -> 200 -> 600 -> n_items.
      dropout: dropout rate on the L2-normalised input row in training.
      anneal_cap: largest KL weight.
      total_anneal_steps: optimisation steps over which beta grows linearly from 0 (0: beta is
        `anneal_cap` from the start).
      l2_reg: weight of the L2 penalty ``sum(w ** 2)`` on the weight matrices (not biases).

    Returns:
      ``Trainable(init, loss, score, optimizer)``; params as :func:`init_vae`, model state ``()``.
      The loss draws its dropout mask and the reparameterisation noise from
      ``key_drop, key_eps = jax.random.split(key)``; its aux holds "neg_ll", "kl" (batch means)
      and "beta".

    Raises:
      ConfigError: an invalid hyperparameter (the message names it).
    """
    dims = _validate(
        lr=lr,
        dims=dims,
        dropout=dropout,
        anneal_cap=anneal_cap,
        total_anneal_steps=total_anneal_steps,
        l2_reg=l2_reg,
    )
    dropout, anneal_cap, l2_reg = float(dropout), float(anneal_cap), float(l2_reg)

    def init(key: jax.Array, n_items: int) -> tuple[Params, tuple]:
        return init_vae(key, n_items, dims), ()

    def loss(params: Params, state: tuple, batch: UserBatch, key: jax.Array, info: StepInfo):
        key_drop, key_eps = jax.random.split(key)
        x = layers.dropout(key_drop, layers.l2_normalize(batch.rows), dropout)
        mu, logvar = encode(params, x)
        eps = jax.random.normal(key_eps, mu.shape, mu.dtype)
        z = mu + eps * jnp.exp(0.5 * logvar)
        neg_ll = multinomial_nll(decode(params, z), batch.rows)
        kl = kl_per_row(mu, logvar)
        beta = anneal(info.step, anneal_cap, total_anneal_steps)
        value = mean_over_rows(neg_ll + beta * kl, batch)
        if l2_reg > 0:
            weights = [layer["w"] for part in ("encoder", "decoder") for layer in params[part]]
            value = value + l2_reg * sum(jnp.sum(w**2) for w in weights)
        aux = {
            "neg_ll": mean_over_rows(jax.lax.stop_gradient(neg_ll), batch),
            "kl": mean_over_rows(jax.lax.stop_gradient(kl), batch),
            "beta": beta,
        }
        return value, (state, aux)

    def score(params: Params, batch: UserBatch) -> jax.Array:
        mu, _ = encode(params, layers.l2_normalize(batch.rows))
        return decode(params, mu)

    def optimizer() -> optax.GradientTransformation:
        return optax.adam(lr)

    return Trainable(init, loss, score, optimizer)


DEFAULTS: dict[str, Any] = {
    name: p.default for name, p in inspect.signature(multvae).parameters.items()
}
"""Every argument of :func:`multvae` and its default."""

TRAIN_DEFAULTS: dict[str, Any] = {
    "batch_size": 500,
    "max_epochs": 200,
    "eval_every": 1,
    # The original trains 200 epochs and keeps the best validation model; we also stop after
    # 20 evaluations (epochs) without improvement.
    "patience": 20,
}
"""Mult-VAE's training hyperparameters (the original notebook's), as recommender hparams."""

RECOMMENDER_DEFAULTS: dict[str, Any] = {**DEFAULTS, **TRAIN_DEFAULTS}
"""Every hyperparameter of the ``"multvae"`` registry entry and its default."""
