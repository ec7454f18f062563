"""BPR-MF: the triple sampler, the loss against numpy float64, the real training loop."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffrec_jax import models
from diffrec_jax.data.datasets import load_dataset
from diffrec_jax.errors import ConfigError
from diffrec_jax.evaluation import Evaluator
from diffrec_jax.models import bprmf as bprmf_module
from diffrec_jax.models.bprmf import (
    DEFAULTS,
    RECOMMENDER_DEFAULTS,
    bprmf,
    sample_triples,
)
from diffrec_jax.protocol import FitData, Recommender, StepInfo, UserBatch
from diffrec_jax.train import TrainPlan

INFO = StepInfo(jnp.int32(0), jnp.int32(0))
SAMPLE = jax.jit(sample_triples, static_argnums=2)


def _rows(seed, users=12, items=20, density=0.3):
    """Random binary rows with an empty row (index 1) and a full row (index 2)."""
    rng = np.random.default_rng(seed)
    rows = (rng.random((users, items)) < density).astype(np.float32)
    rows[1] = 0.0
    rows[2] = 1.0
    return rows


def np_softplus(x):
    return np.logaddexp(0.0, x)


# --- sampler ---


def test_positives_in_the_row_negatives_not_and_empty_or_full_rows_invalid():
    rows = _rows(0)
    rows[3] *= 2.5  # values other than 1 count as interactions too
    triples = SAMPLE(jax.random.key(1), jnp.asarray(rows), 50)
    pos, neg, valid = (np.asarray(a) for a in triples)
    assert pos.shape == neg.shape == (12, 50) and pos.dtype == neg.dtype == np.int32
    np.testing.assert_array_equal(valid, (rows != 0).any(1) & (rows == 0).any(1))
    assert not valid[1] and not valid[2] and valid[[0, *range(3, 12)]].all()
    taken_pos = np.take_along_axis(rows, pos, axis=1)
    taken_neg = np.take_along_axis(rows, neg, axis=1)
    assert (taken_pos[valid] != 0).all()
    assert (taken_neg[valid] == 0).all()
    # Invalid rows still index real items (gathers stay in range).
    assert (pos >= 0).all() and (pos < 20).all() and (neg >= 0).all() and (neg < 20).all()


def test_samples_are_uniform_over_the_candidates():
    rows = np.zeros((2, 9), np.float32)
    rows[0, [1, 4, 8]] = 1.0
    rows[1, [0, 2, 3, 5, 6, 7]] = 1.0
    n = 30_000
    pos, neg, _ = SAMPLE(jax.random.key(2), jnp.asarray(rows), n)
    for r in range(2):
        for draws, candidates in ((pos[r], rows[r] != 0), (neg[r], rows[r] == 0)):
            counts = np.bincount(np.asarray(draws), minlength=9)
            assert (counts[~candidates] == 0).all()
            p = 1.0 / candidates.sum()
            # Every candidate within 5 binomial standard deviations of n p.
            assert np.all(np.abs(counts[candidates] - n * p) < 5 * np.sqrt(n * p * (1 - p)))


def test_samples_depend_on_the_key_only():
    rows = jnp.asarray(_rows(3))
    a = SAMPLE(jax.random.key(4), rows, 50)
    b = SAMPLE(jax.random.key(4), rows, 50)
    c = SAMPLE(jax.random.key(5), rows, 50)
    chex.assert_trees_all_equal(a, b)
    assert not np.array_equal(a.positives, c.positives)


# --- loss and score ---


MODEL = bprmf(15, factors=5, reg=0.05, samples_per_user=7)
VALUE_AND_GRAD = jax.jit(jax.value_and_grad(MODEL.loss, has_aux=True))  # one compilation


def _loss(params, users, rows, weights, key):
    batch = UserBatch(jnp.asarray(users, jnp.int32), jnp.asarray(rows), jnp.asarray(weights))
    (value, (state, aux)), grads = VALUE_AND_GRAD(params, (), batch, key, INFO)
    assert state == ()
    return value, aux, grads


@pytest.mark.parametrize("padded", [False, True])
def test_loss_matches_numpy(padded):
    rows = _rows(6)
    params, _ = MODEL.init(jax.random.key(0), rows.shape[1])
    users = np.array([3, 0, 14, 7, 7, 2, 9, 1, 5, 11, 12, 4], np.int32)
    real = np.arange(12) < (9 if padded else 12)
    key = jax.random.key(7)
    value, aux, _ = _loss(params, users, rows, real.astype(np.float32), key)
    # The loss samples with sample_triples from its key (checked above).
    pos, neg, valid = (np.asarray(a) for a in SAMPLE(key, jnp.asarray(rows), 7))
    u = np.asarray(params["users"], np.float64)[users]  # [B, d]
    v = np.asarray(params["items"], np.float64)
    x_ui = np.einsum("bd,bsd->bs", u, v[pos])
    x_uj = np.einsum("bd,bsd->bs", u, v[neg])
    bpr = np_softplus(-(x_ui - x_uj))  # -ln sigmoid(x_uij)
    l2 = 0.5 * ((u**2).sum(1)[:, None] + (v[pos] ** 2).sum(2) + (v[neg] ** 2).sum(2))
    counted = real & valid
    want = np.mean((bpr + 0.05 * l2)[counted])  # every row has the same number of triples
    np.testing.assert_allclose(float(value), want, rtol=1e-5)
    np.testing.assert_allclose(float(aux["bpr"]), bpr[counted].mean(), rtol=1e-5)
    np.testing.assert_allclose(float(aux["l2"]), l2[counted].mean(), rtol=1e-5)


def test_padded_and_invalid_rows_change_neither_loss_nor_gradient():
    rows = _rows(8)
    params, _ = MODEL.init(jax.random.key(0), rows.shape[1])
    weights = (np.arange(12) < 8).astype(np.float32)
    other = rows.copy()
    other[8:] = (np.random.default_rng(9).random((4, 20)) < 0.5) * 3.0
    other[1] = 0.0  # the empty row stays empty (weight 1 but no triple)
    key = jax.random.key(10)
    value_a, _, grads_a = _loss(params, np.arange(12), rows, weights, key)
    value_b, _, grads_b = _loss(params, np.arange(12), other, weights, key)
    np.testing.assert_allclose(value_a, value_b, rtol=1e-6)
    chex.assert_trees_all_close(grads_a, grads_b, rtol=1e-5, atol=1e-8)
    # Users without a triple (the empty row 1, the padding 8..11) get no gradient.
    g = np.asarray(grads_a["users"])
    assert np.all(g[[1, 8, 9, 10, 11, 12, 13, 14]] == 0) and np.all(np.abs(g[0]) > 0)


def test_no_valid_row_gives_a_zero_loss():
    params, _ = MODEL.init(jax.random.key(0), 20)
    rows = np.zeros((12, 20), np.float32)
    rows[::2] = 1.0  # full rows have no negative, empty rows no positive
    value, _, grads = _loss(params, np.arange(12), rows, np.ones(12, np.float32), jax.random.key(1))
    assert float(value) == 0.0
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grads))


def test_score_is_the_inner_product_of_embeddings():
    model = bprmf(15, factors=6)
    params, _ = model.init(jax.random.key(3), 20)
    users = jnp.asarray([4, 0, 14], jnp.int32)
    got = jax.jit(model.score)(params, UserBatch(users, jnp.zeros((3, 20))))
    u = np.asarray(params["users"], np.float64)[np.asarray(users)]
    np.testing.assert_allclose(got, u @ np.asarray(params["items"], np.float64).T, rtol=1e-5)
    assert params["users"].shape == (15, 6) and params["items"].shape == (20, 6)
    assert abs(float(np.std(params["users"])) - 0.1) < 0.03


# --- the real training loop ---


@pytest.fixture(scope="module")
def split():
    return load_dataset("synthetic-small").split


HPARAMS = dict(factors=32, lr=3e-2, reg=3e-2, samples_per_user=32)


def test_learns_more_than_toppop_with_one_compilation(split, monkeypatch):
    evaluator = Evaluator(split, ks=(20,))
    data = FitData(split.train, split.valid)
    toppop = models.get("toppop").build()
    baseline = evaluator.evaluate(toppop.score, toppop.fit(data, jax.random.key(0)))
    built = []

    def counted_bprmf(n_users, **kwargs):  # the Trainable fit builds, its loss traced once only
        trainable = bprmf(n_users, **kwargs)
        built.append(n_users)
        return trainable._replace(loss=chex.assert_max_traces(trainable.loss, n=1))

    # 300 users in batches of 64: the last batch of every epoch is padded.
    model = models.get("bprmf").build(**HPARAMS, batch_size=64, max_epochs=20, eval_every=5)
    monkeypatch.setattr(bprmf_module, "bprmf", counted_bprmf)
    params = model.fit(data, jax.random.key(0))
    assert built == [300] and params["users"].shape == (300, 32)
    got = evaluator.evaluate(model.score, params)
    assert got["test"].summary["Recall@20"] > 1.2 * baseline["test"].summary["Recall@20"]


# --- factory and registry ---


def test_recommender_defaults_and_registry(split):
    assert DEFAULTS == dict(factors=64, lr=1e-3, reg=1e-4, samples_per_user=16)
    assert {"batch_size", "max_epochs", "eval_every", "patience"} <= set(RECOMMENDER_DEFAULTS)
    spec = models.get("bprmf")
    assert spec.kind == "trained" and spec.input == "rows" and spec.trainable is None
    model = spec.build(factors=8)
    assert isinstance(model, Recommender) and model.hparams["factors"] == 8
    assert model.score is bprmf_module.embedding_score
    # The Trainable depends on the data (the user table is sized by the train users).
    plan = spec.train_plan(model.hparams, FitData(split.train, split.valid))
    assert isinstance(plan, TrainPlan) and plan.config.batch_size == 128
    params, _ = plan.trainable.init(jax.random.key(0), split.n_items)
    assert params["users"].shape == (split.train.n_users, 8)
    with pytest.raises(ConfigError, match="nope"):
        spec.build(nope=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(factors=0), "factors=0"),
        (dict(samples_per_user=0), "samples_per_user=0"),
        (dict(lr=0.0), "lr=0.0"),
        (dict(reg=-1.0), "reg=-1.0"),
    ],
)
def test_invalid_hyperparameters(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        models.get("bprmf").build(**kwargs)
