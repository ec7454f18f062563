"""Atomic results files, JSON conversion and environment recording."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from diffrec_jax.errors import ConfigError
from diffrec_jax.results import (
    atomic_write,
    ensure_writable_dir,
    environment,
    to_jsonable,
    write_json_atomic,
)


def test_to_jsonable_converts_numpy_and_nonfinite():
    obj = {
        "a": np.float32(0.5),
        "b": np.arange(3),
        "c": (1, np.int64(2)),
        "d": float("nan"),
        "e": np.bool_(True),
    }
    assert to_jsonable(obj) == {"a": 0.5, "b": [0, 1, 2], "c": [1, 2], "d": None, "e": True}


def test_write_json_atomic_roundtrip(tmp_path):
    path = write_json_atomic(tmp_path / "r.json", {"x": np.float64(1.25)})
    assert json.loads(path.read_text()) == {"x": 1.25}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = write_json_atomic(tmp_path / "r.json", {})
        plain = tmp_path / "plain.json"
        plain.write_text("{}")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o644


def test_atomic_write_keeps_old_file_on_crash(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path) as f:
        f.write("half a fi")
        raise RuntimeError("crash")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["r.json"]  # no temporary file left behind


def test_unwritable_output_dir_names_the_flag(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="--output_dir"):
        ensure_writable_dir(blocker / "sub")


def test_environment_records_versions():
    env = environment()
    for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "diffrec_jax"):
        assert env["packages"][name], name
    assert env["jax_backend"] == "cpu"
    json.dumps(to_jsonable(env))
