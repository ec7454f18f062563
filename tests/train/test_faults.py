"""Faults: diverging training, half-written checkpoints, and what the experiment runner writes.

A SIGKILLed training process is tested in test_kill_resume.py.
"""

from __future__ import annotations

import shutil
import time

import pytest
from train_toy_model import RESUME_CONFIG, assert_trees_equal, toy_autoencoder, toy_data, trajectory

from diffrec_jax.errors import DiffrecError
from diffrec_jax.experiment import RunConfig, run
from diffrec_jax.train import TrainingDiverged, train
from diffrec_jax.train.checkpoint import Checkpointer

CONFIG = RESUME_CONFIG


@pytest.fixture(scope="module")
def data():
    return toy_data(seed=6)


@pytest.fixture(scope="module")
def uninterrupted(data):
    return train(toy_autoencoder(), data, CONFIG)


def test_non_finite_parameters_after_a_finite_loss_stop_before_any_save(data, tmp_path):
    # Step 7, the last of epoch 2, has a finite loss but a NaN gradient: the loss check of the
    # epoch passes, the parameters are NaN. Neither validation nor the checkpoint may see them.
    config = CONFIG.replace(checkpoint_dir=str(tmp_path))
    with pytest.raises(TrainingDiverged, match=r"parameters are not after step 7 \(epoch 2\)") as e:
        train(toy_autoencoder(nan_grad_at_step=7), data, config)
    assert (e.value.step, e.value.epoch) == (7, 2)
    assert e.value.checkpoint == str(tmp_path.resolve() / "1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1"]


def test_a_half_written_checkpoint_is_never_resumed(data, uninterrupted, tmp_path):
    config = CONFIG.replace(checkpoint_dir=str(tmp_path))
    train(toy_autoencoder(), data, config.replace(max_epochs=2))
    # A process killed while saving epoch 3 leaves orbax's temporary directory (here a full
    # copy of epoch 2 under epoch 3's temporary name, so resuming it would show).
    stale = tmp_path / "3.orbax-checkpoint-tmp-1764000000123456"

    def leave_stale():
        # (orbax may still be removing the per-process parts of epoch 2 in the background)
        shutil.copytree(tmp_path / "2", stale, ignore=shutil.ignore_patterns("ocdbt.process_*"))

    leave_stale()
    ckpt = Checkpointer(tmp_path, keep=5)
    try:
        assert ckpt.latest_epoch() == 2 and ckpt.all_epochs() == [1, 2]
    finally:
        ckpt.close()
    # Opening the directory deletes the leftover in the background, and orbax's close() does
    # not wait for that: let it finish (else it races the resumed run's own cleanup of the same
    # directory), then leave the leftover again for the resumed run to find.
    deadline = time.monotonic() + 60
    while stale.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not stale.exists()
    leave_stale()
    epochs = []
    resumed = train(toy_autoencoder(), data, config, on_epoch=lambda r: epochs.append(r.epoch))
    assert epochs == [3, 4]
    assert_trees_equal(resumed.state, uninterrupted.state)
    assert trajectory(resumed) == trajectory(uninterrupted)
    # The leftover is deleted when the directory is opened again; epoch 3 was saved anew.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2", "3", "4"]


def test_a_diverging_fit_fails_the_experiment_without_a_results_file(tmp_path):
    # DiffRec with a huge learning rate: the loss is infinite at the second step.
    config = RunConfig(
        models=("toppop", "diffrec"),
        dataset="synthetic-small",
        seeds=(3,),
        hparams={
            "diffrec": {
                "lr": [1e30],
                "dims": [(16,)],
                "emb_size": [4],
                "steps": [5],
                "batch_size": [100],
                "max_epochs": [2],
                "eval_every": [1],
            }
        },
        output_dir=str(tmp_path),
    )
    lines = []
    with pytest.raises(TrainingDiverged) as e:
        run(config, progress=lines.append)
    message = str(e.value)
    assert isinstance(e.value, DiffrecError)
    assert message.startswith("model 'diffrec', seed 3, hparams ")
    assert "lr=1e+30" in message and "training loss is inf at step 1 (epoch 1)" in message
    assert message.endswith("no results file written")
    assert (e.value.step, e.value.epoch) == (1, 1)
    assert len(lines) == 1 and lines[0].startswith("seed 3 toppop")  # toppop finished first
    assert list(tmp_path.iterdir()) == []  # no results file, not even a temporary one
