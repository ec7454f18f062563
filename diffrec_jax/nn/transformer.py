"""Transformer building blocks of the sequential models, as pure functions over plain dicts.

Shapes: B batch, L history length, d model width, H heads. Histories are left-padded with
``pad`` (= n_items, see :mod:`diffrec_jax.protocol`); ``valid = history != pad``.

- :func:`init_embedding` / :func:`embed`: item table ``[n_items + 1, d]`` whose last row is the
  padding embedding (kept at zero by multiplying outputs with the valid mask).
- :func:`attention_mask`: ``[B, 1, L, L]`` bool from the valid mask, causal or bidirectional.
- :func:`init_block` / :func:`block`: one Transformer block (multi-head self-attention and a
  feed-forward network), pre-LN or post-LN, with dropout when a key is given.
- :func:`project_kv` / :func:`attend`: the attention split into key/value projection and the
  attention of queries over given keys/values, so that a sampler can cache the keys and values
  of a fixed prefix and run one new token per step (ADRec).

Attention logits are masked with a large negative number (not -inf): a query with no visible
key (a padding position under a causal mask) gets a uniform average instead of NaN; those
positions are zeroed by the caller's valid mask.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from diffrec_jax.errors import ConfigError
from diffrec_jax.nn.layers import dropout

Params = dict
MASK_VALUE = -1e9


def init_embedding(key: jax.Array, n_items: int, d: int, std: float | None = None) -> jax.Array:
    """[n_items + 1, d] float32 item table, N(0, std^2) (default std = 1/sqrt(d)); the last row
    (the padding item) is zero."""
    std = 1.0 / math.sqrt(d) if std is None else std
    table = std * jax.random.normal(key, (n_items + 1, d), jnp.float32)
    return table.at[n_items].set(0.0)


def embed(table: jax.Array, history: jax.Array) -> jax.Array:
    """[B, L] int -> [B, L, d] rows of `table` (the padding index gives the last row)."""
    return jnp.take(table, history, axis=0)


def attention_mask(valid: jax.Array, causal: bool, segments: jax.Array | None = None) -> jax.Array:
    """[B, L] bool valid positions -> bool mask, True where query i may attend to key j.

    A query attends to valid keys only; with `causal`, only to keys j <= i; with `segments`
    ([B, L] int, packed rows: see :mod:`diffrec_jax.nn.packing`), only to keys of its own
    segment. Shape [B, 1, L, L] when `causal` or `segments`, else [B, 1, 1, L] (the same for
    every query; it broadcasts against the [B, H, L, L] logits).
    """
    mask = valid[:, None, None, :]
    if causal:
        n = valid.shape[-1]
        mask = mask & jnp.tril(jnp.ones((n, n), bool))[None, None]
    if segments is not None:
        mask = mask & (segments[:, None, :, None] == segments[:, None, None, :])
    return mask


def init_layer_norm(d: int) -> Params:
    """``{"scale": ones [d], "bias": zeros [d]}``."""
    return {"scale": jnp.ones((d,), jnp.float32), "bias": jnp.zeros((d,), jnp.float32)}


def layer_norm(p: Params, x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """LayerNorm over the last axis (biased variance, as torch.nn.LayerNorm)."""
    mean = x.mean(-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), -1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"]


def init_linear(key: jax.Array, d_in: int, d_out: int) -> Params:
    """torch.nn.Linear's initialisation: w, b ~ U(-1/sqrt(d_in), 1/sqrt(d_in)).

    Returns ``{"w": [d_in, d_out], "b": [d_out]}``.
    """
    kw, kb = jax.random.split(key)
    bound = 1.0 / math.sqrt(d_in)
    return {
        "w": jax.random.uniform(kw, (d_in, d_out), jnp.float32, -bound, bound),
        "b": jax.random.uniform(kb, (d_out,), jnp.float32, -bound, bound),
    }


def linear(p: Params, x: jax.Array) -> jax.Array:
    """x @ w + b; [..., d_in] -> [..., d_out]."""
    return x @ p["w"] + p["b"]


def init_attention(key: jax.Array, d: int) -> Params:
    """Query, key, value and output projections ``{"q","k","v","o"}``, each d -> d."""
    kq, kk, kv, ko = jax.random.split(key, 4)
    return {n: init_linear(k, d, d) for n, k in zip("qkvo", (kq, kk, kv, ko), strict=True)}


def _split_heads(x: jax.Array, n_heads: int) -> jax.Array:
    """[B, L, d] -> [B, H, L, d / H]."""
    b, n, d = x.shape
    return x.reshape(b, n, n_heads, d // n_heads).transpose(0, 2, 1, 3)


def project_kv(p: Params, x: jax.Array, n_heads: int) -> tuple[jax.Array, jax.Array]:
    """Keys and values of `x` ([B, L, d]): two [B, H, L, d / H] arrays."""
    return _split_heads(linear(p["k"], x), n_heads), _split_heads(linear(p["v"], x), n_heads)


def attend(
    p: Params,
    x_q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    mask: jax.Array,
    n_heads: int,
    *,
    key: jax.Array | None = None,
    rate: float = 0.0,
) -> jax.Array:
    """Multi-head attention of queries from `x_q` over given keys and values.

    Args:
      p: attention parameters (:func:`init_attention`).
      x_q: [B, Lq, d] query inputs.
      k, v: [B, H, Lk, d / H] keys and values (:func:`project_kv`).
      mask: [B or 1, 1, Lq, Lk] bool, True where a query may attend to a key.
      n_heads: H.
      key: dropout key (attention-probability dropout), or None for no dropout.
      rate: dropout rate.

    Returns:
      [B, Lq, d] after the output projection.
    """
    q = _split_heads(linear(p["q"], x_q), n_heads)
    scale = 1.0 / math.sqrt(q.shape[-1])
    logits = jnp.einsum("bhqc,bhkc->bhqk", q, k) * scale
    logits = jnp.where(mask, logits, MASK_VALUE)
    probs = jax.nn.softmax(logits, axis=-1)
    if key is not None and rate > 0:
        probs = dropout(key, probs, rate)
    out = jnp.einsum("bhqk,bhkc->bhqc", probs, v)
    b, h, n, c = out.shape
    return linear(p["o"], out.transpose(0, 2, 1, 3).reshape(b, n, h * c))


def init_block(key: jax.Array, d: int, n_heads: int, ffn_mult: int = 4) -> Params:
    """One Transformer block: attention, two LayerNorms, a d -> ffn_mult d -> d FFN."""
    if d % n_heads:
        raise ConfigError(f"d={d} is not divisible by n_heads={n_heads}")
    ka, k1, k2 = jax.random.split(key, 3)
    return {
        "attn": init_attention(ka, d),
        "ln1": init_layer_norm(d),
        "ln2": init_layer_norm(d),
        "ffn1": init_linear(k1, d, ffn_mult * d),
        "ffn2": init_linear(k2, ffn_mult * d, d),
    }


def _ffn(p: Params, x: jax.Array, key: jax.Array | None, rate: float, activation) -> jax.Array:
    h = activation(linear(p["ffn1"], x))
    if key is not None and rate > 0:
        h = dropout(key, h, rate)
    return linear(p["ffn2"], h)


def _drop(key: jax.Array | None, x: jax.Array, rate: float) -> jax.Array:
    return dropout(key, x, rate) if key is not None and rate > 0 else x


def block(
    p: Params,
    x: jax.Array,
    mask: jax.Array,
    n_heads: int,
    *,
    pre_ln: bool = False,
    key: jax.Array | None = None,
    rate: float = 0.0,
    activation=jax.nn.gelu,
    eps: float = 1e-5,
    kv: tuple[jax.Array, jax.Array] | None = None,
) -> jax.Array:
    """One Transformer block over `x` ([B, L, d]) with attention `mask` ([B, 1, L, Lk]).

    post-LN: ``x = LN(x + Drop(Attn(x))); x = LN(x + Drop(FFN(x)))``.
    pre-LN: ``x = x + Drop(Attn(LN(x))); x = x + Drop(FFN(LN(x)))``.

    Args:
      kv: optional precomputed (keys, values) ([B, H, Lk, d / H]) to attend over instead of
        the projections of `x` itself (a cached prefix plus the new token, see
        :func:`project_kv`); the caller builds them with ``project_kv(p["attn"], src,
        n_heads)`` from this block's input ``src`` (post-LN) or from
        ``layer_norm(p["ln1"], src)`` (pre-LN).
      key: dropout key (None: no dropout).

    Returns:
      [B, L, d].
    """
    keys = jax.random.split(key, 4) if key is not None else (None,) * 4
    h = layer_norm(p["ln1"], x, eps) if pre_ln else x
    k, v = project_kv(p["attn"], h, n_heads) if kv is None else kv
    a = attend(p["attn"], h, k, v, mask, n_heads, key=keys[0], rate=rate)
    x = x + _drop(keys[1], a, rate)
    if not pre_ln:
        x = layer_norm(p["ln1"], x, eps)
    h = layer_norm(p["ln2"], x, eps) if pre_ln else x
    x = x + _drop(keys[3], _ffn(p, h, keys[2], rate, activation), rate)
    if not pre_ln:
        x = layer_norm(p["ln2"], x, eps)
    return x


def encoder(
    blocks: list[Params],
    x: jax.Array,
    valid: jax.Array,
    n_heads: int,
    *,
    causal: bool,
    pre_ln: bool = False,
    key: jax.Array | None = None,
    rate: float = 0.0,
    activation=jax.nn.gelu,
    eps: float = 1e-5,
    segments: jax.Array | None = None,
) -> jax.Array:
    """A stack of :func:`block` over `x` ([B, L, d]); padding positions are zeroed after every
    block (``x * valid``); `segments` ([B, L] int) restricts attention to a token's own segment
    (packed rows). Returns [B, L, d]."""
    mask = attention_mask(valid, causal, segments)
    keys = jax.random.split(key, len(blocks)) if key is not None else (None,) * len(blocks)
    m = valid[..., None].astype(x.dtype)
    for p, k in zip(blocks, keys, strict=True):
        x = block(
            p, x, mask, n_heads, pre_ln=pre_ln, key=k, rate=rate, activation=activation, eps=eps
        )
        x = x * m
    return x
