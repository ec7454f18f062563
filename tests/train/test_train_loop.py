"""End-to-end tests of the training loop on a tiny toy model."""

from __future__ import annotations

import types

import jax
import numpy as np
import pytest
from train_toy_model import toy_autoencoder, toy_data

from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.data.split import Split
from diffrec_jax.errors import ConfigError, DiffrecError
from diffrec_jax.evaluation import Evaluator
from diffrec_jax.models import ModelSpec
from diffrec_jax.protocol import FitData, Recommender
from diffrec_jax.train import (
    TrainConfig,
    TrainingDiverged,
    TrainPlan,
    fit_plan,
    run_plan,
    train,
    training_record,
    validation_evaluator,
)

CONFIG = TrainConfig(
    batch_size=16, max_epochs=4, eval_every=2, patience=None, seed=3, eval_batch_size=16
)


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(leaves(a), leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def trajectory(result):
    """History without wall times."""
    return [(r.epoch, r.loss, r.metrics, r.aux) for r in result.history]


class ScriptedEvaluator:
    """Returns a scripted metric sequence and keeps a copy of the params of every call."""

    def __init__(self, values):
        self.values = list(values)
        self.params_seen = []

    def evaluate(self, score_fn, params, parts=("valid", "test")):
        assert tuple(parts) == ("valid",), "the loop must never ask for test"
        self.params_seen.append(jax.tree.map(np.array, params))
        value = self.values[len(self.params_seen) - 1]
        return {"valid": types.SimpleNamespace(summary={"Recall@20": value, "NDCG@20": -value})}


@pytest.fixture(scope="module")
def data():
    return toy_data()


@pytest.fixture(scope="module")
def reference(data):
    return train(toy_autoencoder(), data, CONFIG)


def test_training_learns_and_reports_a_history(reference, data):
    assert [r.epoch for r in reference.history] == [1, 2, 3, 4]
    assert [r.metrics is not None for r in reference.history] == [False, True, False, True]
    losses = [r.loss for r in reference.history]
    assert losses[-1] < losses[0]
    best = max((r.metrics["Recall@20"], r.epoch) for r in reference.history if r.metrics)
    assert (reference.best_metrics["Recall@20"], reference.best_epoch) == best
    assert not reference.stopped_early
    # The aux diagnostics are averaged over the epoch: StepInfo.epoch is 0-based.
    assert [r.aux["epoch"] for r in reference.history] == [0.0, 1.0, 2.0, 3.0]
    # Model state is threaded through every step; padding rows carry no weight.
    assert int(reference.state.model_state["steps"]) == 4 * 4
    assert int(reference.state.model_state["rows_seen"]) == 4 * data.train.n_users
    assert int(reference.state.step) == 16


def test_best_params_score_as_reported(reference, data):
    """The returned params reproduce the best validation metrics through a fresh Evaluator."""
    empty = InteractionMatrix.from_arrays([], [], shape=data.train.shape)
    split = Split(data.train, data.valid, empty)
    got = (
        Evaluator(split, ks=(10, 20))
        .evaluate(toy_autoencoder().score, reference.params, parts=("valid",))["valid"]
        .summary
    )
    assert got["Recall@20"] == pytest.approx(reference.best_metrics["Recall@20"], abs=1e-12)


def test_same_seed_same_result_and_key_overrides_seed(reference, data):
    again = train(toy_autoencoder(), data, CONFIG)
    assert_trees_equal(again.params, reference.params)
    assert_trees_equal(again.state, reference.state)
    assert trajectory(again) == trajectory(reference)
    by_key = train(toy_autoencoder(), data, CONFIG.replace(seed=0), key=jax.random.key(3))
    assert_trees_equal(by_key.params, reference.params)


def test_different_seed_different_result(reference, data):
    other = train(toy_autoencoder(), data, CONFIG.replace(seed=4))
    diffs = [
        np.abs(a - b).max()
        for a, b in zip(leaves(other.state.params), leaves(reference.state.params), strict=True)
    ]
    assert max(diffs) > 1e-3
    assert trajectory(other) != trajectory(reference)


def test_drop_last_batch_trains_full_batches_only(data):
    result = train(toy_autoencoder(), data, CONFIG.replace(last_batch="drop", max_epochs=2))
    assert int(result.state.model_state["rows_seen"]) == 2 * 48
    assert int(result.state.step) == 2 * 3


def test_one_compilation_and_batches_of_batch_x_items(data, monkeypatch):
    """The step is traced once (the padded last batch included); batches are [B, n_items]."""
    toy = toy_autoencoder()
    traced_shapes = []

    def init(key, n_items):
        # A weakly typed state leaf that the step returns strongly typed: must not retrace.
        params, model_state = toy.init(key, n_items)
        return params, (model_state, jax.numpy.asarray(0.0))

    def counting_loss(params, model_state, batch, key, info):
        traced_shapes.append((batch.users.shape, batch.rows.shape, batch.weights.shape))
        inner, total = model_state
        value, (inner, aux) = toy.loss(params, inner, batch, key, info)
        return value, ((inner, total + batch.weights.sum()), aux)

    densified = []
    dense_rows = InteractionMatrix.dense_rows

    def recording_dense_rows(self, users):
        out = dense_rows(self, users)
        densified.append(out.shape)
        return out

    monkeypatch.setattr(InteractionMatrix, "dense_rows", recording_dense_rows)
    result = train(toy._replace(init=init, loss=counting_loss), data, CONFIG.replace(max_epochs=3))
    assert float(result.state.model_state[1]) == 3 * data.train.n_users
    n_items = data.train.n_items
    assert traced_shapes == [((16,), (16, n_items), (16,))]
    # Every densification (training and validation) is at most batch x items.
    assert densified and all(shape == (16, n_items) for shape in densified)


def test_early_stopping_stops_at_the_right_evaluation_and_returns_its_params(data):
    # Evaluations at epochs 2, 4, 6, 8, ...; best 0.3 at epoch 4; 0.2 and the tie 0.3 do not
    # improve, so patience 2 stops after the evaluation of epoch 8.
    evaluator = ScriptedEvaluator([0.1, 0.3, 0.2, 0.3, 0.25, 0.5])
    config = CONFIG.replace(max_epochs=12, patience=2)
    result = train(toy_autoencoder(), data, config, evaluator=evaluator)
    assert result.stopped_early
    assert len(result.history) == 8 and len(evaluator.params_seen) == 4
    assert result.best_epoch == 4 and result.best_metrics["Recall@20"] == 0.3
    assert_trees_equal(result.params, evaluator.params_seen[1])
    # The final state is the last epoch's, not the best.
    assert not np.array_equal(
        np.asarray(result.state.params["enc"]), evaluator.params_seen[1]["enc"]
    )


def test_without_valid_the_final_params_are_returned(data):
    result = train(toy_autoencoder(), FitData(data.train), CONFIG.replace(max_epochs=2))
    assert result.best_epoch is None and result.best_metrics is None
    assert all(r.metrics is None for r in result.history)
    assert_trees_equal(result.params, result.state.params)


def test_unknown_select_metric_is_a_config_error(data):
    with pytest.raises(ConfigError, match="Recall@7"):
        train(toy_autoencoder(), data, CONFIG.replace(select_metric="Recall@7", max_epochs=2))


def test_drop_with_fewer_users_than_a_batch_is_a_config_error(data):
    with pytest.raises(ConfigError, match="no full batch"):
        train(toy_autoencoder(), data, CONFIG.replace(batch_size=64, last_batch="drop"))


def test_validation_never_reaches_test(data):
    evaluator = validation_evaluator(data, CONFIG)
    assert evaluator.split.test.nnz == 0 and evaluator.split.test.shape == data.train.shape
    assert evaluator.split.valid is data.valid and evaluator.split.train is data.train


def test_nan_loss_stops_with_step_and_epoch_and_keeps_last_checkpoint(data, tmp_path):
    # 4 steps per epoch: step 9 is the second step of epoch 3.
    config = CONFIG.replace(checkpoint_dir=str(tmp_path), checkpoint_every=1, keep_checkpoints=5)
    with pytest.raises(TrainingDiverged, match=r"step 9 \(epoch 3\)") as info:
        train(toy_autoencoder(nan_from_step=9), data, config)
    assert isinstance(info.value, DiffrecError)
    assert (info.value.step, info.value.epoch) == (9, 3)
    assert info.value.checkpoint == str(tmp_path.resolve() / "2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2"]
    # The last good checkpoint resumes: with a finite loss, training completes from epoch 2.
    resumed = train(toy_autoencoder(), data, config)
    assert [r.epoch for r in resumed.history] == [1, 2, 3, 4]
    assert all(np.isfinite(x).all() for x in leaves(resumed.state.params))


def without_seconds(record):
    record = {k: v for k, v in record.items() if k != "seconds_per_epoch"}
    record["history"] = [{k: v for k, v in r.items() if k != "seconds"} for r in record["history"]]
    return record


def test_train_plan_fits_as_the_loop_and_takes_overrides(reference, data):
    toy = toy_autoencoder()
    plan = TrainPlan(toy, CONFIG)
    params, record = fit_plan(plan, data, jax.random.key(3))
    assert_trees_equal(params, reference.params)
    assert without_seconds(record) == without_seconds(training_record(reference))
    assert record["epochs"] == 4 and record["best_epoch"] == reference.best_epoch
    # Overrides replace fields of the plan's config (the plan itself is unchanged).
    short = run_plan(plan, data, jax.random.key(3), overrides={"max_epochs": 2})
    assert [r.epoch for r in short.history] == [1, 2] and plan.config.max_epochs == 4
    assert short.history[0].loss == reference.history[0].loss


def test_trained_model_spec_plugs_into_the_recommender_protocol(reference, data):
    spec = ModelSpec(
        "toy",
        {"latent": 8, "batch_size": 16, "max_epochs": 4, "eval_every": 2, "patience": None},
        kind="trained",
        trainable=toy_autoencoder,
    )
    model = spec.build()
    assert isinstance(model, Recommender) and model.hparams["latent"] == 8
    plan = spec.train_plan(model.hparams, data)
    assert plan.config == CONFIG.replace(seed=0, eval_batch_size=None)
    # With the rest of CONFIG as overrides, the fit is the loop's on CONFIG.
    params, record = spec.fit_with_record(
        model.hparams, data, jax.random.key(3), overrides={"eval_batch_size": 16, "seed": 3}
    )
    assert_trees_equal(params, reference.params)
    assert record["best_epoch"] == reference.best_epoch
    # Recommender.fit is fit_with_record's params: the plan's fit.
    assert_trees_equal(
        model.fit(data, jax.random.key(3)), fit_plan(plan, data, jax.random.key(3))[0]
    )
    with pytest.raises(ConfigError, match="nope"):
        spec.build(nope=1)
