"""Damaged checkpoints: with no intact one left, resuming raises a CheckpointError naming the
checkpoint directory and what was expected of it.

Each case saves one checkpoint (epoch 1) of a small pytree with the library's Checkpointer,
damages it, and asks for the newest intact checkpoint, as ``train`` does on resume. (Resuming
with an intact older checkpoint to fall back on is tested in
tests/train/test_checkpoint_integrity.py.)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from corpus import Case

from diffrec_jax.errors import CheckpointError
from diffrec_jax.train.checkpoint import Checkpointer


def _tree() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        "w": jax.numpy.asarray(rng.standard_normal((64, 32), dtype=np.float32)),
        "step": jax.numpy.int32(7),
        "key": jax.random.key(1),
    }


def _saved(damage: Callable[[Path], None]) -> Callable[[Path], Path]:
    def write(tmp: Path) -> Path:
        directory = tmp / "ckpt"
        ckpt = Checkpointer(directory, keep=2)
        try:
            ckpt.save(1, _tree(), {"epoch": 1, "note": "saved"})
        finally:
            ckpt.close()
        damage(directory)
        return directory

    return write


def _resume(tmp: Path, directory: Any) -> Any:
    ckpt = Checkpointer(directory, keep=2)
    try:
        return ckpt.restore_newest_intact(_tree())
    finally:
        ckpt.close()


def _edit_metadata(edit: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def damage(directory: Path) -> None:
        path = directory / "1" / "meta" / "metadata"
        document = json.loads(path.read_text())
        edit(document)
        path.write_text(json.dumps(document))

    return damage


def _array_files(directory: Path) -> list[Path]:
    return [
        p for p in (directory / "1" / "arrays").rglob("*") if p.is_file() and p.parent.name == "d"
    ]


def _delete_array_files(directory: Path) -> None:
    for path in _array_files(directory):
        path.unlink()


def _truncate_metadata(directory: Path) -> None:
    path = directory / "1" / "meta" / "metadata"
    path.write_bytes(path.read_bytes()[:20])


def _renamed_to_epoch_2(directory: Path) -> None:
    (directory / "1").rename(directory / "2")


NONE_INTACT = "no intact checkpoint among the 1 in {tmp}/ckpt"

CASES = [
    Case(
        "checkpoint_metadata_edited",
        CheckpointError,
        (NONE_INTACT, "{tmp}/ckpt/1: its metadata does not match the checksum saved with it"),
        write=_saved(_edit_metadata(lambda d: d["meta"].update(note="edited"))),
        call=_resume,
    ),
    Case(
        "checkpoint_without_checksums",
        CheckpointError,
        (
            NONE_INTACT,
            "{tmp}/ckpt/1: its metadata has no arrays",
            "expected the epoch and checksums",
        ),
        write=_saved(_edit_metadata(lambda d: d.pop("arrays"))),
        call=_resume,
    ),
    Case(
        "checkpoint_metadata_truncated",
        CheckpointError,
        (NONE_INTACT, "{tmp}/ckpt/1: its metadata (meta/metadata) could not be read"),
        write=_saved(_truncate_metadata),
        call=_resume,
    ),
    Case(
        "checkpoint_array_files_deleted",
        CheckpointError,
        (NONE_INTACT, "{tmp}/ckpt/1: its arrays could not be read", "expected every array file"),
        write=_saved(_delete_array_files),
        call=_resume,
    ),
    Case(
        "checkpoint_under_another_epoch",
        CheckpointError,
        (NONE_INTACT, "{tmp}/ckpt/2: it records epoch 1; expected 2, the name of its directory"),
        write=_saved(_renamed_to_epoch_2),
        call=_resume,
    ),
]
