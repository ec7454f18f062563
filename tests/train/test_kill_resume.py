"""A training process killed with SIGKILL resumes from its checkpoints to the same result.

Three runs of the same command (kill_resume_run.py: a small DiffRec, a checkpoint every epoch)
on one device: one uninterrupted, one killed as soon as its first checkpoint is complete, then
the killed one's command again on its checkpoint directory. The resumed run must finish with
bitwise the same parameters, history and metrics as the uninterrupted one.
"""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest
from subprocess_runs import finish, load_npz, start

SCRIPT = "kill_resume_run.py"


def complete_checkpoints(directory):
    """Epochs of the finished checkpoints (orbax's temporary directories are not digits)."""
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def run_dirs(tmp, name):
    out, ckpt = tmp / name, tmp / f"{name}-checkpoints"
    out.mkdir()
    return out, ckpt


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kill")
    straight_out, straight_ckpt = run_dirs(tmp, "straight")
    killed_out, killed_ckpt = run_dirs(tmp, "killed")
    straight = start(SCRIPT, [straight_out, straight_ckpt], n_devices=1, log=tmp / "straight.log")
    victim = start(SCRIPT, [killed_out, killed_ckpt], n_devices=1, log=tmp / "killed.log")
    try:
        deadline = time.monotonic() + 240
        while not complete_checkpoints(killed_ckpt):
            assert victim.poll() is None, (tmp / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=60)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    killed = {
        "returncode": victim.returncode,
        "checkpoints": complete_checkpoints(killed_ckpt),
        "outputs": sorted(p.name for p in killed_out.iterdir()),
    }
    resumed = start(SCRIPT, [killed_out, killed_ckpt], n_devices=1, log=tmp / "resumed.log")
    finish([(straight, tmp / "straight.log"), (resumed, tmp / "resumed.log")])

    def outcome(out):
        return json.loads((out / "results.json").read_text()), load_npz(out / "params.npz")

    return killed, outcome(straight_out), outcome(killed_out)


def test_the_victim_died_mid_training(runs):
    killed, _, _ = runs
    assert killed["returncode"] == -signal.SIGKILL
    assert killed["outputs"] == []  # killed before writing anything
    assert killed["checkpoints"] and max(killed["checkpoints"]) < 5


def test_the_resumed_run_trained_only_what_was_missing(runs):
    killed, (straight, _), (resumed, _) = runs
    assert straight["epochs_trained_here"] == [1, 2, 3, 4, 5]
    # Resumed after the latest complete checkpoint at the time of the kill (or a later one
    # that completed while the process was dying).
    first = resumed["epochs_trained_here"][0]
    assert first - 1 >= max(killed["checkpoints"])
    assert resumed["epochs_trained_here"] == list(range(first, 6))


def test_resumed_results_equal_the_uninterrupted_run(runs):
    _, (straight, straight_params), (resumed, resumed_params) = runs
    for key in ("best_epoch", "history", "valid", "test"):
        assert resumed[key] == straight[key], key
    assert sorted(resumed_params) == sorted(straight_params)
    for name, value in straight_params.items():
        np.testing.assert_array_equal(resumed_params[name], value, err_msg=name)
