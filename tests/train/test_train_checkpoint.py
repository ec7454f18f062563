"""Checkpoints: resuming continues exactly, retention, atomic layout, guarded resumes."""

from __future__ import annotations

import pytest
from train_toy_model import assert_trees_equal, toy_autoencoder, toy_data, trajectory

from diffrec_jax.errors import ConfigError
from diffrec_jax.train import TrainConfig, train

CONFIG = TrainConfig(
    batch_size=16,
    max_epochs=6,
    eval_every=1,
    patience=3,
    seed=1,
    checkpoint_every=2,
    keep_checkpoints=2,
    eval_batch_size=16,
)


class Interrupt(Exception):
    pass


def interrupt_after(epoch):
    def on_epoch(record):
        if record.epoch == epoch:
            raise Interrupt

    return on_epoch


@pytest.fixture(scope="module")
def data():
    return toy_data(seed=5)


@pytest.fixture(scope="module")
def uninterrupted(data):
    return train(toy_autoencoder(), data, CONFIG)


def test_resume_continues_exactly(data, uninterrupted, tmp_path):
    config = CONFIG.replace(checkpoint_dir=str(tmp_path))
    # Killed after epoch 3: the latest checkpoint is epoch 2, so epoch 3 is trained again.
    with pytest.raises(Interrupt):
        train(toy_autoencoder(), data, config, on_epoch=interrupt_after(3))
    assert sorted(int(p.name) for p in tmp_path.iterdir()) == [2]
    resumed_epochs = []
    resumed = train(
        toy_autoencoder(), data, config, on_epoch=lambda r: resumed_epochs.append(r.epoch)
    )
    assert resumed_epochs == [3, 4, 5, 6]
    # Bitwise: params, optimiser and model state, step, best params, history, early stopping.
    assert_trees_equal(resumed.state, uninterrupted.state)
    assert_trees_equal(resumed.params, uninterrupted.params)
    assert trajectory(resumed) == trajectory(uninterrupted)
    assert (resumed.best_epoch, resumed.best_metrics, resumed.stopped_early) == (
        uninterrupted.best_epoch,
        uninterrupted.best_metrics,
        uninterrupted.stopped_early,
    )
    # Only the latest `keep_checkpoints` remain, and no temporary directory is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["4", "6"]


def test_resume_a_shorter_run_to_more_epochs(data, uninterrupted, tmp_path):
    config = CONFIG.replace(checkpoint_dir=str(tmp_path))
    short = train(toy_autoencoder(), data, config.replace(max_epochs=3))
    assert len(short.history) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2", "3"]  # the end is always saved
    longer = train(toy_autoencoder(), data, config)
    assert_trees_equal(longer.state, uninterrupted.state)
    assert trajectory(longer) == trajectory(uninterrupted)


def test_a_finished_run_is_not_trained_again(data, tmp_path):
    config = CONFIG.replace(checkpoint_dir=str(tmp_path), max_epochs=2)
    first = train(toy_autoencoder(), data, config)
    calls = []
    again = train(toy_autoencoder(), data, config, on_epoch=calls.append)
    assert calls == []
    assert_trees_equal(again.state, first.state)
    assert_trees_equal(again.params, first.params)
    assert trajectory(again) == trajectory(first)


@pytest.mark.parametrize("change", [{"batch_size": 8}, {"seed": 2}, {"last_batch": "drop"}])
def test_resuming_with_another_trajectory_is_refused(data, tmp_path, change):
    config = CONFIG.replace(checkpoint_dir=str(tmp_path), max_epochs=2)
    train(toy_autoencoder(), data, config)
    with pytest.raises(ConfigError, match="checkpoint"):
        train(toy_autoencoder(), data, config.replace(**change))


class ScriptedEvaluator:
    """Returns `values` in order, one per evaluation."""

    def __init__(self, values):
        self.values = iter(values)

    def evaluate(self, score_fn, params, parts=("valid", "test")):
        return {"valid": type("R", (), {"summary": {"Recall@20": next(self.values)}})}


def test_resume_restores_early_stopping_and_best_params(data, tmp_path):
    # Best 0.5 at epoch 1, then three evaluations without improvement: patience 3 stops after
    # epoch 4, returning epoch 1's params. The run is killed after epoch 3 and resumed from the
    # checkpoint of epoch 2, so it must remember best=0.5@1 and one bad evaluation.
    values = [0.5, 0.4, 0.45, 0.3, 0.6, 0.7]
    config = CONFIG.replace(checkpoint_dir=str(tmp_path), patience=3)
    straight = train(
        toy_autoencoder(), data, CONFIG.replace(patience=3), evaluator=ScriptedEvaluator(values)
    )
    assert straight.stopped_early and straight.best_epoch == 1 and len(straight.history) == 4
    with pytest.raises(Interrupt):
        train(
            toy_autoencoder(),
            data,
            config,
            evaluator=ScriptedEvaluator(values),
            on_epoch=interrupt_after(3),
        )
    resumed = train(toy_autoencoder(), data, config, evaluator=ScriptedEvaluator(values[2:]))
    assert resumed.stopped_early and resumed.best_epoch == 1
    assert resumed.best_metrics == {"Recall@20": 0.5}
    assert_trees_equal(resumed.params, straight.params)
    assert_trees_equal(resumed.state, straight.state)
    assert trajectory(resumed) == trajectory(straight)
