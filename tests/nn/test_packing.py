"""Packed training rows: the plan against a numpy reference; packed losses and gradients of
SASRec, SASRec+ and ADRec equal the unpacked ones (no dropout), also when a batch does not fit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffrec_jax.errors import ConfigError
from diffrec_jax.models import adrec as A
from diffrec_jax.models import sasrec as S
from diffrec_jax.nn import packing
from diffrec_jax.protocol import SeqBatch, StepInfo

N_ITEMS, L = 17, 10


def _lengths(seed: int, b: int, long_rows: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = rng.integers(0, 5, b)
    n[:long_rows] = L
    return n


def _batch(lengths: np.ndarray, seed: int = 0) -> SeqBatch:
    """Left-padded "sequence" examples with the given numbers of real tokens."""
    rng = np.random.default_rng(seed)
    b = len(lengths)
    hist = np.full((b, L), N_ITEMS, np.int32)
    targets = np.full((b, L), N_ITEMS, np.int32)
    for r, n in enumerate(lengths):
        if n:
            seq = rng.integers(0, N_ITEMS, n + 1)
            hist[r, L - n :], targets[r, L - n :] = seq[:-1], seq[1:]
    w = np.ones(b, np.float32)
    w[-1] = 0.0  # a padding row of a last batch
    return SeqBatch(jnp.arange(b, dtype=jnp.int32), jnp.asarray(hist), jnp.asarray(targets), w)


def np_next_fit(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and offset of every sequence: next-fit over lengths sorted longest first."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    row, used = 0, 0
    rows, offsets = np.zeros(len(lengths), int), np.zeros(len(lengths), int)
    for i in order:
        if used + lengths[i] > L:
            row, used = row + 1, 0
        rows[i], offsets[i] = row, used
        used += lengths[i]
    return rows, offsets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plan_against_numpy(seed):
    lengths = _lengths(seed, 12, long_rows=1)
    valid = np.arange(L)[None, :] >= L - lengths[:, None]
    n_rows = 6
    p = jax.jit(packing.plan, static_argnums=1)(jnp.asarray(valid), n_rows)
    rows, offsets = np_next_fit(lengths)
    assert bool(p.fits) == (rows[lengths > 0].max() < n_rows)
    index = np.full((n_rows, L), 12 * L)
    segment = np.full((n_rows, L), -1)
    column = np.full((n_rows, L), L - 1)
    for b, n in enumerate(lengths):
        for j in range(n):
            r, c = rows[b], offsets[b] + j
            if r < n_rows:
                index[r, c], segment[r, c], column[r, c] = b * L + L - n + j, b, L - n + j
    np.testing.assert_array_equal(p.index, index)
    np.testing.assert_array_equal(p.segment, segment)
    np.testing.assert_array_equal(p.column, column)
    # gather puts every token of a fitting plan in exactly one slot
    x = np.arange(12 * L).reshape(12, L)
    got = np.asarray(packing.gather(jnp.asarray(x), p, -1))
    np.testing.assert_array_equal(got, np.where(index < 12 * L, index, -1))
    if p.fits:
        assert sorted(got[got >= 0]) == sorted(x[valid])


def test_plan_reports_a_batch_that_does_not_fit():
    lengths = np.full(6, L)  # six full rows cannot go in three
    valid = jnp.ones((6, L), bool)
    assert not bool(packing.plan(valid, 3).fits)
    assert bool(packing.plan(jnp.asarray(np.arange(L)[None] >= L - lengths[:, None]), 6).fits)


def test_rows():
    assert packing.rows(512, 0.25) == 128
    assert packing.rows(512, 0.0) == 0 and packing.rows(512, 1.0) == 0
    assert packing.rows(3, 0.5) == 2
    assert packing.score_rows(512, 0.2) == 154 and packing.score_rows(24, 0.5) == 18
    assert packing.score_rows(512, 0.0) == 0 and packing.score_rows(512, 0.8) == 0
    with pytest.raises(ConfigError, match="pack_ratio"):
        packing.rows(8, 1.5)
    with pytest.raises(ConfigError, match="pack_ratio"):
        S.sasrec(pack_ratio=-0.1)
    with pytest.raises(ConfigError, match="pack_ratio"):
        A.check_config(A.ADRecConfig(pack_ratio=2.0))


def _value_and_grad(trainable, params, batch):
    def loss(p):
        value, (_, aux) = trainable.loss(p, (), batch, jax.random.key(3), StepInfo(0, 0))
        return value, aux

    return jax.jit(jax.value_and_grad(loss, has_aux=True))(params)


def _assert_same(packed, unpacked, fits):
    (v1, aux1), g1 = packed
    (v0, _), g0 = unpacked
    assert float(aux1["packed"]) == float(fits)
    np.testing.assert_allclose(v1, v0, rtol=2e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


SASREC_VARIANTS = {
    "sasrec": dict(loss="bce", d=8, n_heads=2, dropout=0.0, emb_dropout=0.0, max_len=L),
    "sasrec+": dict(
        loss="ce",
        d=8,
        n_heads=2,
        ffn_mult=4,
        activation="gelu",
        pre_ln=False,
        scale_emb=False,
        dropout=0.0,
        emb_dropout=0.0,
        max_len=L,
    ),
}


@pytest.mark.parametrize("long_rows", [0, 14])  # 14 full rows do not fit in 12: unpacked
@pytest.mark.parametrize("name", sorted(SASREC_VARIANTS))
def test_sasrec_packed_equals_unpacked(name, long_rows):
    batch = _batch(_lengths(4, 24, long_rows))
    packed = S.sasrec(**SASREC_VARIANTS[name], pack_ratio=0.5)
    unpacked = S.sasrec(**SASREC_VARIANTS[name], pack_ratio=0.0)
    params, _ = packed.init(jax.random.key(0), N_ITEMS)
    _assert_same(
        _value_and_grad(packed, params, batch),
        _value_and_grad(unpacked, params, batch),
        fits=long_rows == 0,
    )


@pytest.mark.parametrize("long_rows", [0, 14])
def test_adrec_packed_equals_unpacked(long_rows):
    cfg = A.ADRecConfig(d=8, n_heads=2, encoder_blocks=1, emb_dropout=0.0, dropout=0.0, steps=5)
    batch = _batch(_lengths(5, 24, long_rows))
    packed = A.adrec_trainable(cfg._replace(pack_ratio=0.5))
    unpacked = A.adrec_trainable(cfg._replace(pack_ratio=0.0))
    params, _ = packed.init(jax.random.key(0), N_ITEMS)
    out, ref = _value_and_grad(packed, params, batch), _value_and_grad(unpacked, params, batch)
    _assert_same(out, ref, fits=long_rows == 0)
    for name in ("ce", "mse", "t_mean"):
        np.testing.assert_allclose(out[0][1][name], ref[0][1][name], rtol=2e-5)


@pytest.mark.parametrize("long_rows", [0, 20])  # 20 full rows do not fit in 18 (score_rows)
def test_scores_packed_equal_unpacked(long_rows):
    batch = _batch(_lengths(6, 24, long_rows), seed=1)
    batch = SeqBatch(batch.users, batch.history)
    sas = {r: S.sasrec(**SASREC_VARIANTS["sasrec+"], pack_ratio=r) for r in (0.5, 0.0)}
    params, _ = sas[0.5].init(jax.random.key(0), N_ITEMS)
    np.testing.assert_allclose(
        jax.jit(sas[0.5].score)(params, batch),
        jax.jit(sas[0.0].score)(params, batch),
        rtol=1e-5,
        atol=1e-6,
    )
    cfg = A.ADRecConfig(d=8, n_heads=2, encoder_blocks=1, emb_dropout=0.0, dropout=0.0, steps=5)
    params = A.init_params(jax.random.key(1), N_ITEMS, cfg)
    packed = jax.jit(A.make_score(cfg._replace(pack_ratio=0.5), "cached"))(params, batch)
    full = jax.jit(A.make_score(cfg, "full"))(params, batch)
    unpacked = jax.jit(A.make_score(cfg._replace(pack_ratio=0.0), "cached"))(params, batch)
    np.testing.assert_allclose(packed, unpacked, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(packed, full, rtol=1e-5, atol=1e-5)
