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


DROPOUT_BITS = 16
"""Random bits per dropout decision: the rate is rounded to a multiple of 2^-16 (0.1 becomes
0.100006) and the kept entries are scaled by the exact inverse of the rounded keep probability."""


def _drop_threshold(rate: float) -> int:
    """Dropout rate in units of 2^-16, in [0, 2^16 - 1] (a rate < 1 never drops everything)."""
    return min(round(rate * 2**DROPOUT_BITS), 2**DROPOUT_BITS - 1)


def dropout_keep(key: jax.Array, shape: Sequence[int], rate: float) -> jax.Array:
    """The keep mask of :func:`dropout`: bool, `shape`; each entry kept with probability
    ``1 - q``, ``q = round(rate * 2^16) / 2^16``.

    Every entry gets 16 random bits: the two halves of each 32-bit word of
    ``jax.random.bits(key, (*shape[:-1], ceil(shape[-1] / 2)), uint32)``, interleaved along the
    last axis (so the batch axes keep their layout under sharding). That is half the random
    words of ``jax.random.bernoulli`` (one per entry); on the CPU generating them is most of a
    Transformer step's dropout cost (DiffuRec's step on Beauty, one run:
    2.64 s with Bernoulli draws, 2.01 s with these).
    """
    shape = tuple(int(n) for n in shape)
    if not shape:
        return dropout_keep(key, (1,), rate)[0]
    last = shape[-1]
    words = jax.random.bits(key, (*shape[:-1], (last + 1) // 2), jnp.uint32)
    halves = jnp.stack([words & 0xFFFF, words >> 16], axis=-1)
    halves = halves.reshape(*shape[:-1], 2 * ((last + 1) // 2))[..., :last]
    return halves >= _drop_threshold(rate)


def dropout(key: jax.Array, x: jax.Array, rate: float) -> jax.Array:
    """Inverted dropout: zero each entry with probability `rate` (rounded to 16 bits, see
    :func:`dropout_keep`), scale the rest by the inverse of the keep probability."""
    if rate == 0.0:
        return x
    q = _drop_threshold(rate)
    keep = dropout_keep(key, x.shape, rate)
    scale = 2**DROPOUT_BITS / (2**DROPOUT_BITS - q)
    return jnp.where(keep, x * jnp.asarray(scale, x.dtype), jnp.zeros_like(x))


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """x / max(||x||_2, eps) over the last axis (torch.nn.functional.normalize)."""
    norm = jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))
    return x / jnp.maximum(norm, eps)
