"""DiffRec on 1 and 8 (simulated CPU) devices: the same random stream and the same metrics.

test_train_devices.py checks the loop with a toy model (parameters, losses, validation);
this checks what DiffRec draws at every step (step key, batch users and weights, timesteps,
Gaussian noise), and the Evaluator's metrics of parameters replicated over the mesh, with and
without inference noise. Both runs are subprocesses (diffrec_device_run.py), run concurrently.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from subprocess_runs import finish, load_npz, start


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diffrec-devices")
    procs = {
        n: (
            start("diffrec_device_run.py", [tmp / f"{n}.npz"], n_devices=n, log=tmp / f"{n}.log"),
            tmp / f"{n}.log",
        )
        for n in (1, 8)
    }
    finish(list(procs.values()))
    return {n: load_npz(tmp / f"{n}.npz") for n in procs}


def metrics(run):
    return json.loads(str(run["metrics"]))


def test_the_runs_used_one_and_eight_devices(runs):
    assert int(runs[1]["n_devices"]) == int(runs[1]["mesh_size"]) == 1
    assert int(runs[8]["n_devices"]) == int(runs[8]["mesh_size"]) == 8


@pytest.mark.parametrize("name", ["key", "users", "weights", "t", "noise", "importance"])
def test_every_draw_is_the_same_on_one_and_eight_devices(runs, name):
    one, eight = runs[1][f"stream_{name}"], runs[8][f"stream_{name}"]
    assert one.shape[0] == 2 * 8  # 2 epochs of 8 steps, recorded once per step
    np.testing.assert_array_equal(runs[1]["stream_step"], np.arange(16))
    np.testing.assert_array_equal(eight, one)


def test_the_stream_covers_padding_and_importance_sampling(runs):
    run = runs[1]
    # 300 users in batches of 40: the 8th step of every epoch has 20 padding rows.
    assert run["stream_weights"].sum(axis=1).tolist() == 2 * ([40.0] * 7 + [20.0])
    importance = run["stream_importance"]
    assert not importance[0] and importance[-1]  # uniform first, then from the loss history
    # Every epoch visits every user once, in a new order.
    users = run["stream_users"][run["stream_weights"] > 0].reshape(2, 300)
    assert all(sorted(u) == list(range(300)) for u in users)
    assert not np.array_equal(users[0], users[1])


def test_the_evaluator_gives_the_same_metrics_on_one_and_eight_devices(runs):
    one, eight = metrics(runs[1]), metrics(runs[8])
    # The same parameters (with or without inference noise): exactly the same metrics.
    assert eight["fixed"] == one["fixed"]
    assert eight["fixed_noisy"] == one["fixed_noisy"]
    assert one["fixed_noisy"]["test"] != one["fixed"]["test"]  # the noise does change scores
    # Trained parameters may differ in the last bits (gradient all-reduce order).
    for part in ("valid", "test"):
        for name, value in one["trained"][part].items():
            assert eight["trained"][part][name] == pytest.approx(value, abs=1e-6), (part, name)
