"""LightGCN: adjacency, propagation and loss against dense numpy float64, the training loop."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffrec_jax.train.plan
from diffrec_jax import models
from diffrec_jax.data.datasets import load_dataset
from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.data.split import Split
from diffrec_jax.errors import ConfigError
from diffrec_jax.evaluation import Evaluator
from diffrec_jax.models import lightgcn as lightgcn_module
from diffrec_jax.models.bprmf import embedding_score, sample_triples
from diffrec_jax.models.lightgcn import (
    DEFAULTS,
    RECOMMENDER_DEFAULTS,
    graph_arrays,
    lightgcn,
    normalized_adjacency,
    propagate,
    propagate_jit,
)
from diffrec_jax.protocol import FitData, Recommender, StepInfo, UserBatch, exported
from diffrec_jax.train import TrainPlan

INFO = StepInfo(jnp.int32(0), jnp.int32(0))


def _train(seed, n_users=9, n_items=7, density=0.35) -> InteractionMatrix:
    """Random train matrix with an isolated user (row 0), an isolated item (column 0) and
    values other than 1."""
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < density) * rng.integers(1, 5, (n_users, n_items))
    dense[0] = 0
    dense[:, 0] = 0
    dense[1:, 1] = 2  # every other user has an item
    users, items = np.nonzero(dense)
    values = dense[users, items].astype(np.float32)
    return InteractionMatrix.from_arrays(users, items, values=values, shape=(n_users, n_items))


def np_adjacency(train: InteractionMatrix) -> np.ndarray:
    r = (train.csr.toarray() != 0).astype(np.float64)
    n_users, n_items = r.shape
    a = np.zeros((n_users + n_items, n_users + n_items))
    a[:n_users, n_users:] = r
    a[n_users:, :n_users] = r.T
    degree = a.sum(1)
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-300)), 0.0)
    return inv_sqrt[:, None] * a * inv_sqrt[None, :]


def np_propagate(params, adjacency, n_layers):
    e = np.concatenate([np.asarray(params["users"], np.float64), np.asarray(params["items"])])
    layers = [e]
    for _ in range(n_layers):
        layers.append(adjacency @ layers[-1])
    final = np.mean(layers, axis=0)
    n_users = params["users"].shape[0]
    return final[:n_users], final[n_users:]


def _params(seed, n_users, n_items, d=4):
    rng = np.random.default_rng(seed)
    return {
        "users": jnp.asarray(rng.normal(size=(n_users, d)), jnp.float32),
        "items": jnp.asarray(rng.normal(size=(n_items, d)), jnp.float32),
    }


# --- graph ---


def test_normalized_adjacency_matches_dense_numpy():
    train = _train(0)
    adj = normalized_adjacency(train)
    assert adj.shape == (16, 16) and adj.dtype == np.float32 and adj.has_sorted_indices
    want = np_adjacency(train)
    np.testing.assert_allclose(adj.toarray(), want, rtol=1e-6)
    # Isolated user 0 and item 0 (node 9) have no edges; the matrix is symmetric.
    assert adj[[0]].nnz == 0 and adj[[9]].nnz == 0
    np.testing.assert_allclose(adj.toarray(), adj.toarray().T)
    # A hand-checkable entry: user u, item i with degrees d_u, d_i: 1 / sqrt(d_u d_i).
    r = train.csr.toarray() != 0
    u, i = 3, 1
    assert r[u, i]
    np.testing.assert_allclose(adj[u, 9 + i], 1 / np.sqrt(r[u].sum() * r[:, i].sum()), rtol=1e-6)
    # The same graph from the scipy matrix.
    np.testing.assert_array_equal(normalized_adjacency(train.csr).toarray(), adj.toarray())


def test_graph_arrays_are_the_sorted_coo_of_the_adjacency():
    train = _train(1)
    graph = graph_arrays(train)
    adj = normalized_adjacency(train).toarray()
    rows, cols = graph["indices"][:, 0], graph["indices"][:, 1]
    assert graph["indices"].dtype == np.int32 and graph["values"].dtype == np.float32
    assert np.all(np.diff(rows) >= 0)
    np.testing.assert_array_equal(graph["values"], adj[rows, cols])
    assert len(rows) == np.count_nonzero(adj)


@pytest.mark.parametrize("dense_limit", [0, 10**9])  # the sparse and the dense block paths
def test_propagation_matches_dense_numpy(dense_limit):
    train = _train(2)
    graph = graph_arrays(train, dense_limit=dense_limit)
    assert ("r_hat" in graph) == (dense_limit > 0)
    params = _params(3, 9, 7)
    for n_layers in (0, 3):
        got = propagate_jit(params, graph, n_layers=n_layers)
        users, items = np_propagate(params, np_adjacency(train), n_layers)
        np.testing.assert_allclose(got["users"], users, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got["items"], items, rtol=1e-5, atol=1e-6)
    # Isolated user: only its ego embedding, divided by K + 1.
    np.testing.assert_allclose(got["users"][0], params["users"][0] / 4, rtol=1e-6)


# --- loss ---


TRAIN = _train(4)
MODEL = lightgcn(graph_arrays(TRAIN), 9, factors=4, n_layers=2, reg=0.05)
VALUE_AND_GRAD = jax.jit(jax.value_and_grad(MODEL.loss, has_aux=True))  # one compilation
SAMPLE = jax.jit(sample_triples, static_argnums=2)


def _batch(padded):
    users = np.array([3, 0, 8, 5, 5, 1], np.int32)
    weights = (np.arange(6) < (4 if padded else 6)).astype(np.float32)
    return UserBatch(jnp.asarray(users), jnp.asarray(TRAIN.dense_rows(users)), weights)


@pytest.mark.parametrize("padded", [False, True])
def test_loss_matches_numpy(padded):
    params, state = MODEL.init(jax.random.key(0), 7)
    batch = _batch(padded)
    key = jax.random.key(5)
    (value, (new_state, aux)), _ = VALUE_AND_GRAD(params, state, batch, key, INFO)
    chex.assert_trees_all_equal(new_state, state)
    pos, neg, valid = (np.asarray(a) for a in SAMPLE(key, batch.rows, 16))
    users = np.asarray(batch.users)
    final_u, final_i = np_propagate(params, np_adjacency(TRAIN), 2)
    u = final_u[users]
    bpr = np.logaddexp(0.0, -np.einsum("bd,bsd->bs", u, final_i[pos] - final_i[neg]))
    ego_u = np.asarray(params["users"], np.float64)[users]
    ego_i = np.asarray(params["items"], np.float64)
    l2 = 0.5 * ((ego_u**2).sum(1)[:, None] + (ego_i[pos] ** 2).sum(2) + (ego_i[neg] ** 2).sum(2))
    counted = valid & (np.asarray(batch.weights) > 0)
    assert not valid[1]  # user 0 has no train item
    np.testing.assert_allclose(float(value), np.mean((bpr + 0.05 * l2)[counted]), rtol=1e-5)
    np.testing.assert_allclose(float(aux["bpr"]), bpr[counted].mean(), rtol=1e-5)
    np.testing.assert_allclose(float(aux["l2"]), l2[counted].mean(), rtol=1e-5)


def test_gradient_matches_a_dense_implementation():
    params, state = MODEL.init(jax.random.key(0), 7)
    batch = _batch(padded=True)
    key = jax.random.key(6)
    triples = SAMPLE(key, batch.rows, 16)
    adjacency = jnp.asarray(np_adjacency(TRAIN), jnp.float32)
    weights = np.asarray(batch.weights) * np.asarray(triples.valid)

    def dense_loss(params):
        e = jnp.concatenate([params["users"], params["items"]])
        final = (e + adjacency @ e + adjacency @ adjacency @ e) / 3
        u, i = final[:9][batch.users], final[9:]
        x = jnp.einsum("bd,bsd->bs", u, i[triples.positives] - i[triples.negatives])
        eu, ei = params["users"][batch.users], params["items"]
        l2 = (
            jnp.sum(eu**2, 1)[:, None]
            + jnp.sum(ei[triples.positives] ** 2, 2)
            + jnp.sum(ei[triples.negatives] ** 2, 2)
        )
        per_row = jnp.mean(jax.nn.softplus(-x) + 0.05 * 0.5 * l2, axis=1)
        return jnp.sum(weights * per_row) / weights.sum()

    _, got = VALUE_AND_GRAD(params, state, batch, key, INFO)
    want = jax.jit(jax.grad(dense_loss))(params)
    chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-6)


# --- scoring ---


def test_exported_embeddings_score_as_the_propagated_model():
    rng = np.random.default_rng(7)
    train = _train(8)
    valid_items = rng.integers(0, 7, 9)
    valid = InteractionMatrix.from_arrays(np.arange(9), valid_items, shape=(9, 7))
    split = Split(
        train,
        valid,
        InteractionMatrix.from_arrays(np.zeros(0, int), np.zeros(0, int), shape=(9, 7)),
        name="t",
    )
    evaluator = Evaluator(split, ks=(3,))
    graph = graph_arrays(train)
    model = lightgcn(graph, 9, factors=4, n_layers=2)
    params = _params(9, 9, 7)

    def propagated_score(p, batch):  # propagates on every batch
        return embedding_score(propagate(p, graph, 2), batch)

    direct = evaluator.evaluate(propagated_score, params, parts=("valid",))["valid"].summary
    # The Trainable's export propagates once; its score is the inner product of the result.
    scoring = exported(model, params)
    chex.assert_trees_all_close(scoring, propagate_jit(params, graph, n_layers=2), rtol=1e-6)
    assert model.score is embedding_score
    wrapped = evaluator.evaluate(model.score, scoring, parts=("valid",))
    assert wrapped["valid"].summary == pytest.approx(direct, rel=1e-6)
    scores = np.asarray(model.score(scoring, UserBatch(jnp.arange(9), None)))
    final_u, final_i = np_propagate(params, np_adjacency(train), 2)
    np.testing.assert_allclose(scores, final_u @ final_i.T, rtol=1e-4, atol=1e-5)


# --- the real training loop ---


@pytest.fixture(scope="module")
def split():
    return load_dataset("synthetic-small").split


def test_learns_more_than_toppop_and_returns_final_embeddings(split, monkeypatch):
    evaluator = Evaluator(split, ks=(20,))
    data = FitData(split.train, split.valid)
    toppop = models.get("toppop").build()
    baseline = evaluator.evaluate(toppop.score, toppop.fit(data, jax.random.key(0)))
    model = models.get("lightgcn").build(
        factors=16, n_layers=2, lr=2e-2, batch_size=64, max_epochs=15, eval_every=5
    )
    results, exports = [], []

    def counted_lightgcn(*args, **kwargs):  # the Trainable fit builds, its loss traced once only
        trainable = lightgcn(*args, **kwargs)

        def recorded_export(p):
            exports.append(trainable.export(p))
            return exports[-1]

        return trainable._replace(
            loss=chex.assert_max_traces(trainable.loss, n=1), export=recorded_export
        )

    def recorded_train(*args, **kwargs):
        # The loop's own validation evaluator (on data.valid), with the Trainable's export.
        assert kwargs["evaluator"] is None
        results.append(real_train(*args, **kwargs))
        return results[-1]

    real_train = diffrec_jax.train.plan.train
    monkeypatch.setattr(lightgcn_module, "lightgcn", counted_lightgcn)
    monkeypatch.setattr(diffrec_jax.train.plan, "train", recorded_train)
    # 300 users in batches of 64: the last batch of every epoch is padded.
    params = model.fit(data, jax.random.key(0))
    (result,) = results
    # Propagated once before each of the 3 validations and once for the returned params.
    assert len(exports) == 4 and params is exports[-1]
    # The Trainable's export propagates on the graph it was given: the dense user-item block
    # of this small graph (graph_arrays' default), as the fit before the layered core did.
    want = propagate_jit(result.params, graph_arrays(split.train), n_layers=2)
    chex.assert_trees_all_close(params, want, rtol=1e-6)
    got = evaluator.evaluate(model.score, params)
    assert got["test"].summary["Recall@20"] > 1.2 * baseline["test"].summary["Recall@20"]
    # Validation during training scored the same final embeddings as the returned params.
    recall = got["valid"].summary["Recall@20"]
    assert recall == pytest.approx(result.best_metrics["Recall@20"], rel=1e-6)


# --- factory and registry ---


def test_recommender_defaults_and_registry():
    assert DEFAULTS == dict(factors=64, n_layers=3, lr=1e-3, reg=1e-4, samples_per_user=16)
    assert {"batch_size", "max_epochs", "eval_every", "patience"} <= set(RECOMMENDER_DEFAULTS)
    spec = models.get("lightgcn")
    assert spec.kind == "trained" and spec.input == "rows" and spec.trainable is None
    model = spec.build(n_layers=2)
    assert isinstance(model, Recommender) and model.hparams["n_layers"] == 2
    assert model.score is embedding_score
    # The Trainable depends on the data (the graph of the train matrix).
    plan = spec.train_plan(model.hparams, FitData(TRAIN))
    assert isinstance(plan, TrainPlan) and plan.config.batch_size == 128
    assert plan.trainable.export is not None
    with pytest.raises(ConfigError, match="nope"):
        spec.build(nope=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n_layers=-1), "n_layers=-1"),
        (dict(factors=0), "factors=0"),
        (dict(lr=0.0), "lr=0.0"),
        (dict(reg=-1.0), "reg=-1.0"),
        (dict(samples_per_user=0), "samples_per_user=0"),
    ],
)
def test_invalid_hyperparameters(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        models.get("lightgcn").build(**kwargs)
