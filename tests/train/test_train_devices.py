"""Data parallelism: 1 and 8 (simulated CPU) devices train the same model.

The device count is fixed when JAX starts, so both runs are subprocesses (run concurrently).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from subprocess_runs import finish, load_npz, start


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("devices")
    procs = {
        n: (
            start("train_device_run.py", [tmp / f"{n}.npz"], n_devices=n, log=tmp / f"{n}.log"),
            tmp / f"{n}.log",
        )
        for n in (1, 8)
    }
    finish(list(procs.values()))
    return {n: load_npz(tmp / f"{n}.npz") for n in procs}


def history(run):
    return json.loads(str(run["history"]))


def test_the_runs_used_one_and_eight_devices(runs):
    assert int(runs[1]["n_devices"]) == int(runs[1]["mesh_size"]) == 1
    assert int(runs[8]["n_devices"]) == int(runs[8]["mesh_size"]) == 8
    # batch 9 on 8 devices: 16 rows per step, the padding weighted 0: every user once per epoch
    assert int(runs[8]["odd_rows"]) == int(runs[1]["odd_rows"]) == 3 * 50


def test_random_stream_does_not_depend_on_device_count(runs):
    # "kept" counts the dropout mask's kept entries: an exact integer per step.
    kept = [[h["aux"]["kept"] for h in history(runs[n])] for n in (1, 8)]
    assert kept[0] == kept[1]
    assert int(runs[1]["rows_seen"]) == int(runs[8]["rows_seen"]) == 3 * 50


def test_params_and_metrics_match_across_device_counts(runs):
    names = sorted(k for k in runs[1] if k.startswith("param_"))
    assert names and names == sorted(k for k in runs[8] if k.startswith("param_"))
    for name in names:
        np.testing.assert_allclose(runs[8][name], runs[1][name], rtol=1e-4, atol=1e-5)
    h1, h8 = history(runs[1]), history(runs[8])
    assert [h["epoch"] for h in h1] == [h["epoch"] for h in h8] == [1, 2, 3]
    for a, b in zip(h1, h8, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        for metric in ("Recall@20", "NDCG@20", "Recall@10"):
            assert a["metrics"][metric] == pytest.approx(b["metrics"][metric], abs=1e-6)
    assert int(runs[1]["best_epoch"]) == int(runs[8]["best_epoch"])
