"""Training over two JAX processes (jax.distributed on localhost, CPU, gloo collectives).

Two processes with 2 CPU devices each form one 4-device mesh and train a small DiffRec with
validation and a checkpoint every epoch (multihost_run.py): 2 epochs, then the same command
with 3 epochs resumes from the checkpoint of epoch 2. A single process with 4 devices trains the
3 epochs in one go as the reference (concurrently with the first multi-process run).
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from subprocess_runs import finish, free_port, load_npz, start

if "jax_cpu_collectives_implementation" not in jax.config.values:
    pytest.skip(
        f"jax {jax.__version__} has no jax_cpu_collectives_implementation option: no "
        "cross-process collectives on CPU",
        allow_module_level=True,
    )


def start_two_processes(tmp, name: str, max_epochs: int):
    """Starts processes 0 and 1 of a run; returns [(process, log)]."""
    coordinator = f"localhost:{free_port()}"
    procs = []
    for i in range(2):
        log = tmp / f"{name}{i}.log"
        args = [tmp / f"{name}{i}.npz", "--num_processes=2", f"--process_id={i}"]
        args += [f"--coordinator={coordinator}", f"--checkpoint_dir={tmp / 'checkpoints'}"]
        args += [f"--max_epochs={max_epochs}"]
        procs.append((start("multihost_run.py", args, n_devices=2, log=log), log))
    return procs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multihost")
    first = start_two_processes(tmp, "first", max_epochs=2)
    reference = start("multihost_run.py", [tmp / "ref.npz"], n_devices=4, log=tmp / "ref.log")
    try:
        finish(first, timeout=240)
        out = {"first": sorted(p.name for p in (tmp / "checkpoints").iterdir())}
        finish(start_two_processes(tmp, "p", max_epochs=3), timeout=240)
    finally:
        finish([(reference, tmp / "ref.log")], timeout=240)
    out |= {name: load_npz(tmp / f"{name}.npz") for name in ("p0", "p1", "ref")}
    out["checkpoints"] = sorted(p.name for p in (tmp / "checkpoints").iterdir())
    return out


def params(run):
    return [run[k] for k in sorted(run, key=lambda k: (len(k), k)) if k.startswith("param_")]


def history(run):
    return json.loads(str(run["history"]))


def test_two_processes_form_one_mesh(runs):
    for name in ("p0", "p1"):
        assert int(runs[name]["process_count"]) == 2
        assert int(runs[name]["device_count"]) == int(runs[name]["mesh_size"]) == 4
    assert int(runs["ref"]["process_count"]) == 1 and int(runs["ref"]["mesh_size"]) == 4


def test_both_processes_hold_the_same_parameters(runs):
    for a, b in zip(params(runs["p0"]), params(runs["p1"]), strict=True):
        np.testing.assert_array_equal(a, b)


def test_two_processes_train_as_one(runs):
    assert len(params(runs["p0"])) == len(params(runs["ref"])) == 6
    for a, b in zip(params(runs["p0"]), params(runs["ref"]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    multi, single = history(runs["p0"]), history(runs["ref"])
    assert [h["epoch"] for h in multi] == [h["epoch"] for h in single] == [1, 2, 3]
    for a, b in zip(multi, single, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
        assert a["aux"] == pytest.approx(b["aux"], rel=1e-5)
        for name, value in b["metrics"].items():
            assert a["metrics"][name] == pytest.approx(value, abs=1e-6), name


def test_the_second_run_resumed_from_the_checkpoints_of_the_first(runs):
    assert runs["first"] == ["1", "2"]  # written once for both processes
    assert runs["p0"]["epochs_here"].tolist() == runs["p1"]["epochs_here"].tolist() == [3]
    assert runs["ref"]["epochs_here"].tolist() == [1, 2, 3]
    assert runs["checkpoints"] == ["2", "3"]  # keep_checkpoints=2
