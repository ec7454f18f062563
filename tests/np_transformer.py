"""A plain numpy float64 transcription of diffrec_jax.nn.transformer, for tests.

Parameters are the same nested dicts (converted with :func:`np64`); shapes as the module's.
"""

from __future__ import annotations

import math

import jax
import numpy as np


def np64(tree):
    """A pytree of arrays as float64 numpy arrays."""
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def np_layer_norm(p, x, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def np_linear(p, x):
    return x @ p["w"] + p["b"]


def np_gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def np_gelu_erf(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def np_relu(x):
    return np.maximum(x, 0.0)


def np_attention(p, x_q, x_kv, mask, n_heads):
    """mask [B, 1, Lq, Lk] bool; per head softmax(q k^T / sqrt(c)) v, masked keys at -1e9."""
    b, lq, d = x_q.shape
    c = d // n_heads
    q = np_linear(p["q"], x_q).reshape(b, lq, n_heads, c)
    k = np_linear(p["k"], x_kv).reshape(b, -1, n_heads, c)
    v = np_linear(p["v"], x_kv).reshape(b, -1, n_heads, c)
    out = np.zeros((b, lq, n_heads, c))
    for i in range(b):
        for h in range(n_heads):
            logits = q[i, :, h] @ k[i, :, h].T / math.sqrt(c)
            logits = np.where(np.broadcast_to(mask[i, 0], logits.shape), logits, -1e9)
            e = np.exp(logits - logits.max(-1, keepdims=True))
            out[i, :, h] = (e / e.sum(-1, keepdims=True)) @ v[i, :, h]
    return np_linear(p["o"], out.reshape(b, lq, d))


def np_block(p, x, mask, n_heads, pre_ln, act, eps=1e-5):
    """One block without dropout: pre-LN or post-LN (see transformer.block)."""
    if pre_ln:
        h = np_layer_norm(p["ln1"], x, eps)
        x = x + np_attention(p["attn"], h, h, mask, n_heads)
        h = np_layer_norm(p["ln2"], x, eps)
        return x + np_linear(p["ffn2"], act(np_linear(p["ffn1"], h)))
    x = np_layer_norm(p["ln1"], x + np_attention(p["attn"], x, x, mask, n_heads), eps)
    ffn = np_linear(p["ffn2"], act(np_linear(p["ffn1"], x)))
    return np_layer_norm(p["ln2"], x + ffn, eps)


def np_mask(valid, causal):
    """[B, L] bool -> [B, 1, L, L] bool attention mask."""
    m = valid[:, None, None, :] & np.ones((1, 1, valid.shape[1], 1), bool)
    if causal:
        m = m & np.tril(np.ones((valid.shape[1],) * 2, bool))
    return m


def np_encoder(blocks, x, valid, n_heads, causal, pre_ln, act, eps=1e-5):
    """A stack of :func:`np_block`, padding positions zeroed after every block."""
    mask = np_mask(valid, causal)
    for p in blocks:
        x = np_block(p, x, mask, n_heads, pre_ln, act, eps) * valid[..., None]
    return x
