"""Small building blocks as pure functions over plain-dict parameters.

A dense layer is ``{"w": [d_in, d_out], "b": [d_out]}`` (``y = x @ w + b``); an MLP is a list of
them. Initialisers take a typed PRNG key and return float32 arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax

from diffrec_jax.errors import ConfigError

Dense = dict[str, jax.Array]


def init_dense(key: jax.Array, d_in: int, d_out: int, bias_std: float = 0.001) -> Dense:
    """DiffRec's initialisation: w ~ N(0, sqrt(2 / (d_in + d_out))), b ~ N(0, bias_std).

    Returns:
      ``{"w": [d_in, d_out], "b": [d_out]}`` float32.
    """
    key_w, key_b = jax.random.split(key)
    std = math.sqrt(2.0 / (d_in + d_out))
    return {
        "w": std * jax.random.normal(key_w, (d_in, d_out), jnp.float32),
        "b": bias_std * jax.random.normal(key_b, (d_out,), jnp.float32),
    }


def dense(params: Dense, x: jax.Array) -> jax.Array:
    """x @ w + b; [..., d_in] -> [..., d_out]."""
    return x @ params["w"] + params["b"]


def init_mlp(key: jax.Array, sizes: Sequence[int], bias_std: float = 0.001) -> list[Dense]:
    """Dense layers sizes[0] -> sizes[1] -> ... -> sizes[-1], each with :func:`init_dense`."""
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ConfigError(f"an MLP needs at least two positive sizes, got {sizes=}")
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        init_dense(k, int(a), int(b), bias_std)
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def mlp(
    layers: Sequence[Dense], x: jax.Array, activation=jnp.tanh, final_activation: bool = False
) -> jax.Array:
    """Applies the layers with `activation` after each but the last (unless final_activation)."""
    for i, layer in enumerate(layers):
        x = dense(layer, x)
        if final_activation or i < len(layers) - 1:
            x = activation(x)
    return x


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """Sinusoidal timestep embedding [cos(t f), sin(t f)], zero-padded when `dim` is odd.

    f_k = exp(-ln(max_period) k / half) for k < half = dim // 2, in float32 (as the originals).

    Args:
      t: [B] timesteps (int or float).
      dim: embedding size.

    Returns:
      [B, dim] float32.
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    if dim % 2:
        emb = jnp.concatenate([emb, jnp.zeros_like(emb[:, :1])], axis=-1)
    return emb


def torch_adam(learning_rate, weight_decay: float = 0.0, b2: float = 0.999):
    """``torch.optim.Adam(lr, betas=(0.9, b2), weight_decay)``: L2 added to the gradient before
    Adam (not AdamW's decoupled decay). `learning_rate` is a float or an optax schedule."""
    adam = optax.adam(learning_rate, b2=b2)
    if weight_decay > 0:
        return optax.chain(optax.add_decayed_weights(weight_decay), adam)
    return adam


def dropout(key: jax.Array, x: jax.Array, rate: float) -> jax.Array:
    """Inverted dropout: zero each entry with probability `rate`, scale the rest by 1/(1-rate)."""
    if rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """x / max(||x||_2, eps) over the last axis (torch.nn.functional.normalize)."""
    norm = jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))
    return x / jnp.maximum(norm, eps)
