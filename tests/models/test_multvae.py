"""Mult-VAE: layout, loss and scores against numpy float64, the real training loop."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffrec_jax import models
from diffrec_jax.data.datasets import load_dataset
from diffrec_jax.errors import ConfigError
from diffrec_jax.evaluation import Evaluator
from diffrec_jax.models.multvae import (
    DEFAULTS,
    RECOMMENDER_DEFAULTS,
    anneal,
    decoder_sizes,
    encoder_sizes,
    init_vae,
    multvae,
)
from diffrec_jax.nn import layers
from diffrec_jax.protocol import FitData, Recommender, StepInfo, Trainable, UserBatch
from diffrec_jax.train import TrainPlan, train

SMALL = dict(dims=(6, 12), total_anneal_steps=10)


def _rows(seed, users=10, items=30, density=0.25):
    rng = np.random.default_rng(seed)
    rows = (rng.random((users, items)) < density).astype(np.float32)
    rows[:, 0] = 1.0  # no empty row
    return rows


# --- numpy float64 transcription of the original's forward pass and neg_ELBO ---


def np_mlp(layers, h):
    for i, layer in enumerate(layers):
        h = h @ np.asarray(layer["w"], np.float64) + np.asarray(layer["b"], np.float64)
        if i < len(layers) - 1:
            h = np.tanh(h)
    return h


def np_neg_elbo(params, x, keep, eps, dropout, beta, l2_reg, real):
    """Per-row -ELBO terms and the batch loss, as dawenl/vae_cf's MultiVAE in float64."""
    x = np.asarray(x, np.float64)
    h = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    h = np.where(keep, h / (1 - dropout), 0.0)
    h = np_mlp(params["encoder"], h)
    d = h.shape[1] // 2
    mu, logvar = h[:, :d], h[:, d:]
    z = mu + eps * np.exp(0.5 * logvar)
    logits = np_mlp(params["decoder"], z)
    log_softmax = logits - logits.max(1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
    neg_ll = -(log_softmax * x).sum(1)
    kl = 0.5 * (-logvar + np.exp(logvar) + mu**2 - 1).sum(1)
    l2 = sum(
        (np.asarray(layer["w"], np.float64) ** 2).sum()
        for part in ("encoder", "decoder")
        for layer in params[part]
    )
    value = np.mean((neg_ll + beta * kl)[real]) + l2_reg * l2
    return value, neg_ll, kl


# --- layout ---


@pytest.mark.parametrize(
    ("dims", "enc", "dec"),
    [
        ((200, 600), [50, 600, 400], [200, 600, 50]),
        ((16,), [50, 32], [16, 50]),
        ((8, 16, 32), [50, 32, 16, 16], [8, 16, 32, 50]),
    ],
)
def test_layer_layout(dims, enc, dec):
    assert encoder_sizes(50, dims) == enc
    assert decoder_sizes(50, dims) == dec
    params = jax.eval_shape(lambda k: init_vae(k, 50, dims), jax.random.key(0))
    for part, sizes in (("encoder", enc), ("decoder", dec)):
        shapes = list(zip(sizes[:-1], sizes[1:], strict=True))
        assert [layer["w"].shape for layer in params[part]] == shapes
        assert [layer["b"].shape for layer in params[part]] == [(s,) for s in sizes[1:]]


def test_init_is_glorot_uniform_and_small_truncated_biases():
    params = init_vae(jax.random.key(3), 1000, (100, 300))
    for layer in params["encoder"] + params["decoder"]:
        w = np.asarray(layer["w"], np.float64)
        limit = math.sqrt(6.0 / sum(w.shape))
        assert np.abs(w).max() <= limit
        # Uniform(-l, l): variance l^2 / 3.
        assert abs(w.std() / (limit / math.sqrt(3)) - 1) < 5 * math.sqrt(0.8 / w.size)
        b = np.asarray(layer["b"], np.float64)
        assert np.abs(b).max() <= 0.002 + 1e-9
    biases = np.concatenate([np.asarray(layer["b"]) for layer in params["encoder"]])
    # A normal truncated at 2 sigma has standard deviation 0.8796 sigma.
    assert abs(biases.std() / (0.001 * 0.8796) - 1) < 0.1


def test_anneal_schedule():
    for step, want in [(0, 0.0), (5, 0.05), (20, 0.2), (1000, 0.2)]:
        np.testing.assert_allclose(anneal(jnp.int32(step), 0.2, 100), want, rtol=1e-6)
    np.testing.assert_allclose(anneal(jnp.int32(0), 0.3, 0), 0.3)


# --- loss and score ---


MODEL = multvae(l2_reg=0.1, **SMALL)
VALUE_AND_GRAD = jax.jit(jax.value_and_grad(MODEL.loss, has_aux=True))  # one compilation


@pytest.mark.parametrize(("step", "padded"), [(3, False), (50, True)])
def test_loss_matches_numpy(step, padded):
    x = _rows(1)
    real = np.arange(10) < (7 if padded else 10)
    batch = UserBatch(jnp.arange(10, dtype=jnp.int32), jnp.asarray(x), jnp.asarray(real, float))
    params, state = MODEL.init(jax.random.key(0), x.shape[1])
    key = jax.random.key(4)
    info = StepInfo(jnp.int32(step), jnp.int32(0))
    (value, (new_state, aux)), _ = VALUE_AND_GRAD(params, state, batch, key, info)
    assert new_state == ()
    # The loss's draws: dropout mask, then the reparameterisation noise.
    key_drop, key_eps = jax.random.split(key)
    keep = np.asarray(layers.dropout_keep(key_drop, x.shape, 0.5))
    eps = np.asarray(jax.random.normal(key_eps, (10, 6)), np.float64)
    beta = min(0.2, step / 10)
    want, neg_ll, kl = np_neg_elbo(params, x, keep, eps, 0.5, beta, 0.1, real)
    np.testing.assert_allclose(float(value), want, rtol=1e-5)
    np.testing.assert_allclose(float(aux["neg_ll"]), neg_ll[real].mean(), rtol=1e-5)
    np.testing.assert_allclose(float(aux["kl"]), kl[real].mean(), rtol=1e-4)
    np.testing.assert_allclose(float(aux["beta"]), beta, rtol=1e-6)


def test_padded_rows_change_neither_loss_nor_gradient():
    x = _rows(2)
    garbage = x.copy()
    garbage[6:] = np.random.default_rng(3).random((4, x.shape[1])) * 20.0
    weights = jnp.asarray(np.arange(10) < 6, jnp.float32)
    params, state = MODEL.init(jax.random.key(0), x.shape[1])
    info = StepInfo(jnp.int32(7), jnp.int32(0))
    key = jax.random.key(5)
    (va, _), ga = VALUE_AND_GRAD(params, state, UserBatch(jnp.arange(10), x, weights), key, info)
    (vb, _), gb = VALUE_AND_GRAD(
        params, state, UserBatch(jnp.arange(10), garbage, weights), key, info
    )
    np.testing.assert_allclose(va, vb, rtol=1e-6)
    chex.assert_trees_all_close(ga, gb, rtol=1e-5, atol=1e-7)


def test_score_is_the_decoder_of_the_posterior_mean():
    model = multvae(**SMALL)
    x = _rows(6)
    params, _ = model.init(jax.random.key(1), x.shape[1])
    got = jax.jit(model.score)(params, UserBatch(jnp.arange(10), jnp.asarray(x)))
    h = np.asarray(x, np.float64)
    h = np_mlp(params["encoder"], h / np.linalg.norm(h, axis=1, keepdims=True))
    np.testing.assert_allclose(got, np_mlp(params["decoder"], h[:, :6]), rtol=1e-4, atol=1e-5)


# --- the Trainable in the real training loop ---


@pytest.fixture(scope="module")
def split():
    return load_dataset("synthetic-small").split


def test_learns_more_than_toppop_with_one_compilation(split):
    evaluator = Evaluator(split, ks=(20,))
    data = FitData(split.train, split.valid)
    toppop = models.get("toppop").build()
    baseline = evaluator.evaluate(toppop.score, toppop.fit(data, jax.random.key(0)))
    spec = models.get("multvae")
    model = spec.build(
        dims=(32, 64), lr=1e-2, total_anneal_steps=50, batch_size=64, max_epochs=15, eval_every=5
    )
    plan = spec.train_plan(model.hparams, data)
    # What model.fit does, with a loss that may be traced once only. 300 users in batches of 64:
    # the last batch of every epoch is padded.
    counted = plan.trainable._replace(loss=chex.assert_max_traces(plan.trainable.loss, n=1))
    result = train(counted, data, plan.config, key=jax.random.key(0))
    assert len(result.history) == 15
    assert result.history[-1].aux["beta"] > result.history[0].aux["beta"]  # annealing
    got = evaluator.evaluate(model.score, result.params)
    assert got["test"].summary["Recall@20"] > 1.2 * baseline["test"].summary["Recall@20"]


# --- factory and registry ---


def test_recommender_defaults_and_registry(split):
    assert DEFAULTS == dict(
        lr=1e-3,
        dims=(200, 600),
        dropout=0.5,
        anneal_cap=0.2,
        total_anneal_steps=200_000,
        l2_reg=0.0,
    )
    assert {"batch_size", "max_epochs", "eval_every", "patience"} <= set(RECOMMENDER_DEFAULTS)
    assert RECOMMENDER_DEFAULTS["batch_size"] == 500
    spec = models.get("multvae")
    assert spec.kind == "trained" and spec.input == "rows"
    model = spec.build(lr=3e-4)
    assert isinstance(model, Recommender) and model.hparams["lr"] == 3e-4
    plan = spec.train_plan(model.hparams, FitData(split.train))
    assert isinstance(plan, TrainPlan) and isinstance(plan.trainable, Trainable)
    assert plan.config.batch_size == 500 and plan.source is None and plan.evaluator is None
    with pytest.raises(ConfigError, match="nope"):
        models.get("multvae").build(nope=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(lr=0.0), "lr=0.0"),
        (dict(dims=()), "dims=()"),
        (dict(dims=(10, 0)), "dims="),
        (dict(dropout=1.0), "dropout=1.0"),
        (dict(anneal_cap=-0.1), "anneal_cap=-0.1"),
        (dict(total_anneal_steps=-1), "total_anneal_steps=-1"),
        (dict(l2_reg=-1.0), "l2_reg=-1.0"),
    ],
)
def test_invalid_hyperparameters(kwargs, match):
    with pytest.raises(ConfigError, match=match.replace("(", r"\(").replace(")", r"\)")):
        multvae(**kwargs)
