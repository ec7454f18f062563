"""The training loop's pure pieces: config validation, batch order, early stopping, sharding."""

from __future__ import annotations

import numpy as np
import pytest

from diffrec_jax.errors import ConfigError
from diffrec_jax.train import (
    EarlyStopping,
    TrainConfig,
    early_stopping_update,
    epoch_batches,
    should_stop,
    steps_per_epoch,
)
from diffrec_jax.train.loop import pad_batches
from diffrec_jax.train.sharding import device_batch_size

# -- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("batch_size", 0),
        ("batch_size", 2.5),
        ("max_epochs", -1),
        ("eval_every", 0),
        ("patience", 0),
        ("checkpoint_every", 0),
        ("keep_checkpoints", 0),
        ("log_every", 0),
        ("eval_batch_size", 0),
        ("last_batch", "keep"),
        ("shuffle", 1),
        ("seed", -3),
        ("ks", ()),
        ("ks", (10, 0)),
        ("batch_size", True),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


def test_config_defaults_are_diffrec_and_trajectory_is_json_friendly():
    config = TrainConfig()
    assert (config.batch_size, config.eval_every, config.patience) == (400, 5, 4)
    assert config.trajectory()["ks"] == [10, 20]
    assert config.replace(max_epochs=3).trajectory() == config.trajectory()
    assert config.replace(batch_size=8).trajectory() != config.trajectory()


@pytest.mark.parametrize(
    "batch_size, n_devices, rows",
    [(16, 8, 16), (400, 8, 400), (500, 8, 504), (7, 1, 7), (3, 2, 4), (2, 8, 8)],
)
def test_batches_are_padded_to_split_over_devices(batch_size, n_devices, rows):
    assert device_batch_size(batch_size, n_devices) == rows
    users = np.arange(3 * batch_size, dtype=np.int32).reshape(3, batch_size)
    weights = np.ones((3, batch_size), np.float32)
    weights[-1, -1] = 0.0  # a padding row of the last batch stays one
    u, w = pad_batches(users, weights, rows)
    assert u.shape == w.shape == (3, rows)
    np.testing.assert_array_equal(u[:, :batch_size], users)
    np.testing.assert_array_equal(w[:, :batch_size], weights)
    assert not w[:, batch_size:].any() and np.isin(u[:, batch_size:], users).all()


# -- batch order ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n_users, batch_size", [(50, 16), (48, 16), (5, 16), (1, 1)])
def test_pad_visits_every_user_once_with_weight_one(n_users, batch_size):
    users, weights = epoch_batches(n_users, batch_size, epoch=3, seed_words=(1, 2))
    n_steps = -(-n_users // batch_size)
    assert users.shape == weights.shape == (n_steps, batch_size)
    assert users.dtype == np.int32 and weights.dtype == np.float32
    real = users[weights == 1]
    np.testing.assert_array_equal(np.sort(real), np.arange(n_users))
    assert weights.sum() == n_users
    assert set(np.unique(weights)) <= {0.0, 1.0}
    # Padding sits at the end of the last batch and repeats real users.
    flat = weights.ravel()
    np.testing.assert_array_equal(flat, np.arange(flat.size) < n_users)
    assert np.all((users >= 0) & (users < n_users))


def test_drop_keeps_only_full_batches():
    users, weights = epoch_batches(50, 16, epoch=0, seed_words=(7,), last_batch="drop")
    assert users.shape == (3, 16) and np.all(weights == 1)
    assert len(np.unique(users)) == 48
    assert steps_per_epoch(50, 16, "drop") == 3 and steps_per_epoch(50, 16, "pad") == 4


def test_order_is_a_function_of_seed_and_epoch():
    def order(epoch, words=(1, 2)):
        return epoch_batches(50, 16, epoch=epoch, seed_words=words)[0]

    np.testing.assert_array_equal(order(1), order(1))
    assert not np.array_equal(order(1), order(2))
    assert not np.array_equal(order(1), order(1, (1, 3)))
    expected = np.random.default_rng([1, 2, 1]).permutation(50)
    np.testing.assert_array_equal(order(1).ravel()[:50], expected)
    fixed = epoch_batches(50, 16, epoch=1, seed_words=(1, 2), shuffle=False)[0]
    np.testing.assert_array_equal(fixed.ravel()[:50], np.arange(50))


# -- early stopping -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, patience, stop_at, best_at",
    [
        # improvements at evals 0, 1; then 0.2 (1 bad), 0.3 ties the best (2 bad): stop at eval 3.
        ([0.1, 0.3, 0.2, 0.3, 0.25, 0.5], 2, 3, 1),
        ([0.1, 0.3, 0.2, 0.3, 0.25, 0.5], 3, 4, 1),
        ([0.1, 0.3, 0.2, 0.3, 0.25, 0.5], None, None, 5),
        # a NaN never improves
        ([0.5, float("nan"), 0.4], 2, 2, 0),
        ([0.1, 0.2, 0.3, 0.4], 1, None, 3),
    ],
)
def test_early_stopping_on_a_scripted_sequence(values, patience, stop_at, best_at):
    es, stopped = EarlyStopping(), None
    for i, v in enumerate(values):
        es, improved = early_stopping_update(es, v, epoch=10 * (i + 1))
        assert improved == (es.best_epoch == 10 * (i + 1))
        if should_stop(es, patience):
            stopped = i
            break
    assert stopped == stop_at
    assert es.best_epoch == 10 * (best_at + 1)
    assert es.best_metric == values[best_at]
