"""Resumable units of work: one JSON record per finished unit, its arrays beside it.

A unit (a seed run, a diagnostic evaluation) is saved as ``<name>.json`` with its arrays as
``<name>.<array>.npy`` (and parameters as ``<name>.params.npz``), every file written atomically
(:func:`diffrec_jax.results.atomic_write`). The arrays are written first and the JSON last, so a
unit whose JSON exists is complete. The JSON holds a ``key``: what the unit was computed from
(model, chosen hyperparameters, seed, data fingerprint...). :func:`load_unit` returns the record
only when its key equals the expected one, so a rerun redoes exactly the units whose inputs
changed (e.g. a larger budget that chose another configuration) and skips the others.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from diffrec_jax.errors import DataError
from diffrec_jax.results import atomic_write, to_jsonable, write_json_atomic

UNIT_FORMAT = "diffrec_jax.audit_unit/1"


def array_path(path: str | Path, name: str) -> Path:
    """``<dir>/<stem>.<name>.npy`` of the unit file `path`."""
    path = Path(path)
    return path.with_name(f"{path.stem}.{name}.npy")


def params_path(path: str | Path) -> Path:
    """``<dir>/<stem>.params.npz`` of the unit file `path`."""
    path = Path(path)
    return path.with_name(f"{path.stem}.params.npz")


def save_array(path: str | Path, array: np.ndarray) -> Path:
    """Saves one array as .npy, atomically."""
    path = Path(path)
    with atomic_write(path, "wb") as f:
        np.save(f, np.asarray(array), allow_pickle=False)
    return path


def save_unit(
    path: str | Path,
    key: Mapping[str, Any],
    record: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Saves a finished unit: its arrays, then ``{"format", "key", **record, "arrays"}``.

    Args:
      path: the unit's JSON file (its directory is created).
      key: what the unit was computed from (JSON-able).
      record: the unit's results (JSON-able after :func:`~diffrec_jax.results.to_jsonable`).
      arrays: arrays saved beside it, by name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = {}
    for name, array in (arrays or {}).items():
        names[name] = save_array(array_path(path, name), array).name
    return write_json_atomic(
        path, {"format": UNIT_FORMAT, "key": to_jsonable(key), **record, "arrays": names}
    )


def load_unit(path: str | Path, key: Mapping[str, Any]) -> dict[str, Any] | None:
    """The saved unit at `path` if it exists, is complete and was computed from `key`."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or record.get("format") != UNIT_FORMAT:
        return None
    if record.get("key") != json.loads(json.dumps(to_jsonable(key))):
        return None
    for filename in record.get("arrays", {}).values():
        if not (path.parent / filename).is_file():
            return None
    return record


def load_array(path: str | Path, name: str) -> np.ndarray:
    """Array `name` of the unit at `path`.

    Raises:
      DataError: the file is missing or unreadable.
    """
    file = array_path(path, name)
    try:
        return np.load(file, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read array {name!r} of the unit: {e}", path=file) from None


def save_params(path: str | Path, params: Any) -> Path:
    """Saves the leaves of a parameter pytree as ``leaf_<i>`` in an .npz, atomically."""
    path = Path(path)
    leaves: dict[str, Any] = {
        f"leaf_{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(params))
    }
    with atomic_write(path, "wb") as f:
        np.savez(f, **leaves)
    return path


def load_params(path: str | Path, template: Any) -> Any:
    """Parameters saved by :func:`save_params`, in the structure of `template` (a pytree of
    the same structure, e.g. ``jax.eval_shape`` of the model's init).

    Raises:
      DataError: the file is missing, unreadable, or does not match the template.
    """
    path = Path(path)
    treedef: Any = jax.tree.structure(template)  # jaxlib's PyTreeDef has no type information
    try:
        with np.load(path, allow_pickle=False) as data:
            leaves = [data[f"leaf_{i}"] for i in range(len(data.files))]
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"cannot read saved parameters: {e}", path=path) from None
    if len(leaves) != treedef.num_leaves:
        raise DataError(
            f"saved parameters have {len(leaves)} arrays, the model {treedef.num_leaves}",
            path=path,
        )
    return jax.tree.unflatten(treedef, [jax.numpy.asarray(x) for x in leaves])


__all__ = [
    "UNIT_FORMAT",
    "array_path",
    "load_array",
    "load_params",
    "load_unit",
    "params_path",
    "save_array",
    "save_params",
    "save_unit",
]
