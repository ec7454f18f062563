"""Transformer pieces against a plain numpy float64 transcription; masking and the KV cache."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from np_transformer import (
    np64,
    np_attention,
    np_block,
    np_encoder,
    np_gelu_tanh,
    np_layer_norm,
    np_mask,
    np_relu,
)

from diffrec_jax.errors import ConfigError
from diffrec_jax.nn import transformer as tf

D, H, L, B = 8, 2, 6, 3


# --- fixtures --------------------------------------------------------------------------------


def _inputs(seed, b=B, n=L, d=D):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, n, d)).astype(np.float32)
    lengths = np.array([n, n // 2, 1][:b])
    valid = np.arange(n)[None, :] >= (n - lengths)[:, None]  # left padding
    return x * valid[..., None], valid


def _random_block(seed, d=D, n_heads=H, ffn_mult=2):
    p = tf.init_block(jax.random.key(seed), d, n_heads, ffn_mult)
    # non-trivial LayerNorm parameters
    rng = np.random.default_rng(seed + 100)
    for name in ("ln1", "ln2"):
        p[name] = {
            "scale": jnp.asarray(1 + 0.3 * rng.standard_normal(d), jnp.float32),
            "bias": jnp.asarray(0.3 * rng.standard_normal(d), jnp.float32),
        }
    return p


def test_layer_norm_against_numpy():
    rng = np.random.default_rng(0)
    x = (3 + 2 * rng.standard_normal((4, 5, D))).astype(np.float32)
    p = {"scale": rng.standard_normal(D).astype(np.float32), "bias": rng.standard_normal(D)}
    p = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), p)
    got = jax.jit(tf.layer_norm)(p, x)
    np.testing.assert_allclose(got, np_layer_norm(np64(p), x.astype(np.float64)), atol=1e-5)
    np.testing.assert_allclose(
        tf.layer_norm(tf.init_layer_norm(D), x, eps=1e-8).std(-1), 1.0, rtol=1e-4
    )


def test_attention_mask():
    valid = np.array([[False, True, True], [True, True, True]])
    got = np.asarray(tf.attention_mask(jnp.asarray(valid), causal=True))
    assert got.shape == (2, 1, 3, 3)
    np.testing.assert_array_equal(got, np_mask(valid, True))
    np.testing.assert_array_equal(got[0, 0], [[0, 0, 0], [0, 1, 0], [0, 1, 1]])
    bidir = np.asarray(tf.attention_mask(jnp.asarray(valid), causal=False))
    np.testing.assert_array_equal(np.broadcast_to(bidir, (2, 1, 3, 3)), np_mask(valid, False))


@pytest.mark.parametrize("causal", [True, False])
def test_attend_against_numpy(causal):
    x, valid = _inputs(1)
    p = tf.init_attention(jax.random.key(1), D)
    mask = tf.attention_mask(jnp.asarray(valid), causal)
    k, v = tf.project_kv(p, x, H)
    assert k.shape == v.shape == (B, H, L, D // H)
    got = jax.jit(functools.partial(tf.attend, n_heads=H))(p, x, k, v, mask)
    want = np_attention(
        np64(p), x.astype(np.float64), x.astype(np.float64), np_mask(valid, causal), H
    )
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize(
    "pre_ln, activation, np_act, causal",
    [
        (False, jax.nn.gelu, np_gelu_tanh, True),
        (True, jax.nn.relu, np_relu, True),
        (False, jax.nn.relu, np_relu, False),
        (True, jax.nn.gelu, np_gelu_tanh, False),
    ],
)
def test_block_against_numpy(pre_ln, activation, np_act, causal):
    x, valid = _inputs(2)
    p = _random_block(2)
    mask = tf.attention_mask(jnp.asarray(valid), causal)
    fn = jax.jit(functools.partial(tf.block, n_heads=H, pre_ln=pre_ln, activation=activation))
    got = fn(p, x, mask)
    want = np_block(np64(p), x.astype(np.float64), np_mask(valid, causal), H, pre_ln, np_act)
    np.testing.assert_allclose(got, want, atol=2e-5)


@pytest.mark.parametrize("pre_ln", [False, True])
def test_encoder_against_numpy(pre_ln):
    x, valid = _inputs(3)
    blocks = [_random_block(s) for s in (3, 4)]
    got = tf.encoder(blocks, jnp.asarray(x), jnp.asarray(valid), H, causal=True, pre_ln=pre_ln)
    want = np_encoder(np64(blocks), x.astype(np.float64), valid, H, True, pre_ln, np_gelu_tanh)
    np.testing.assert_allclose(got, want, atol=3e-5)
    assert np.all(np.asarray(got)[~valid] == 0)


@pytest.mark.parametrize("pre_ln", [False, True])
def test_causal_output_ignores_later_positions(pre_ln):
    x, valid = _inputs(4)
    blocks = [_random_block(s) for s in (5, 6)]
    run = jax.jit(
        lambda x: tf.encoder(blocks, x, jnp.asarray(valid), H, causal=True, pre_ln=pre_ln)
    )
    base = np.asarray(run(x))
    rng = np.random.default_rng(0)
    for i in range(L - 1):
        changed = x.copy()
        changed[:, i + 1 :] = rng.standard_normal(changed[:, i + 1 :].shape)
        out = np.asarray(run(changed * valid[..., None]))
        np.testing.assert_allclose(out[:, : i + 1], base[:, : i + 1], atol=1e-6)
        assert not np.allclose(out[0, i + 1 :], base[0, i + 1 :])  # later ones do change


def test_bidirectional_output_sees_later_positions():
    x, valid = _inputs(5)
    blocks = [_random_block(7)]
    run = jax.jit(lambda x: tf.encoder(blocks, x, jnp.asarray(valid), H, causal=False))
    changed = x.copy()
    changed[0, -1] += 1.0
    assert not np.allclose(np.asarray(run(changed))[0, 0], np.asarray(run(x))[0, 0])


@pytest.mark.parametrize("causal", [True, False])
def test_padding_content_is_ignored(causal):
    """Whatever sits at padding positions, valid outputs do not change (keys are masked)."""
    x, valid = _inputs(6)
    blocks = [_random_block(8), _random_block(9)]
    run = jax.jit(lambda x: tf.encoder(blocks, x, jnp.asarray(valid), H, causal=causal))
    noisy = np.where(valid[..., None], x, 5.0).astype(np.float32)
    np.testing.assert_allclose(np.asarray(run(noisy))[valid], np.asarray(run(x))[valid], atol=1e-5)


@pytest.mark.parametrize("pre_ln", [False, True])
def test_cached_prefix_equals_full_block_for_the_last_token(pre_ln):
    x, valid = _inputs(7)
    p = _random_block(10)

    @jax.jit
    def run(x):
        mask = tf.attention_mask(jnp.asarray(valid), causal=True)
        full = tf.block(p, x, mask, H, pre_ln=pre_ln)
        # keys/values of the whole sequence (for pre-LN: of the normalised input), one query
        source = tf.layer_norm(p["ln1"], x) if pre_ln else x
        kv = tf.project_kv(p["attn"], source, H)
        last = tf.block(p, x[:, -1:], mask[:, :, -1:, :], H, pre_ln=pre_ln, kv=kv)
        # attend alone: the last query over the cached keys/values
        att = tf.attend(p["attn"], source[:, -1:], *kv, mask[:, :, -1:], H)
        full_att = tf.attend(p["attn"], source, *kv, mask, H)
        return full[:, -1:], last, full_att[:, -1:], att

    full, last, full_att, att = run(x)
    np.testing.assert_allclose(last, full, atol=1e-5)
    np.testing.assert_allclose(att, full_att, atol=1e-5)


def test_dropout_needs_a_key_and_is_deterministic_given_one():
    x, valid = _inputs(8)
    blocks = [_random_block(11)]
    enc = functools.partial(tf.encoder, blocks, x, jnp.asarray(valid), H, causal=True)
    run = jax.jit(lambda key: enc(key=key, rate=0.5))
    a, b, c = run(jax.random.key(0)), run(jax.random.key(0)), run(jax.random.key(1))
    np.testing.assert_array_equal(a, b)
    no_key = jax.jit(lambda: enc(rate=0.5))()
    np.testing.assert_array_equal(no_key, jax.jit(lambda: enc())())  # no key: no dropout
    assert not np.allclose(a, no_key) and not np.allclose(a, c)


def test_embedding_padding_row_is_zero_and_heads_must_divide():
    table = tf.init_embedding(jax.random.key(0), 10, D)
    assert table.shape == (11, D) and np.all(np.asarray(table[10]) == 0)
    np.testing.assert_allclose(np.asarray(table[:10]).std(), 1 / math.sqrt(D), rtol=0.3)
    np.testing.assert_array_equal(
        tf.embed(table, jnp.array([[10, 3]])), table[jnp.array([[10, 3]])]
    )
    with pytest.raises(ConfigError, match="n_heads=3"):
        tf.init_block(jax.random.key(0), D, 3)
