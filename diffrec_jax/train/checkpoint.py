"""Orbax checkpoints of the full training state.

A checkpoint is one orbax step directory named by the number of completed epochs, holding two
items:

- "arrays": a pytree of arrays saved with ``StandardSave`` (parameters, optimiser state, model
  state, step counter, the typed base key, the best parameters so far);
- "meta": a JSON document (epoch, early-stopping state, history, the config fields that must
  match on resume).

Saves are atomic: orbax writes into ``<epoch>.orbax-checkpoint-tmp-<timestamp>`` and renames
the directory when every file is written, so a crash mid-save leaves the previous checkpoints
intact and the partial one invisible (:meth:`Checkpointer.latest_epoch` never returns it);
opening the directory again deletes such leftovers. Saves run asynchronously (device-to-host
copies happen before `save` returns, so the caller may donate the arrays afterwards);
:meth:`Checkpointer.close` waits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath


class Checkpointer:
    """Saves and restores (arrays pytree, JSON metadata) pairs, keeping the latest `keep`."""

    def __init__(self, directory: str | Path, keep: int):
        """Opens (creating it if needed) the checkpoint directory `directory`: a local path or
        a URL orbax can write (``gs://...``); with several processes, a directory all of them
        see."""
        text = str(directory)
        # A URL (gs://bucket/run on a TPU pod, shared by every host) stays a URL.
        self.directory = epath.Path(text) if "://" in text else Path(text).expanduser().resolve()
        # cleanup_tmp_directories: a save interrupted by a crash leaves a temporary directory
        # that no step lookup sees; delete it when the directory is opened again.
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, cleanup_tmp_directories=True
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_epoch(self) -> int | None:
        """Number of completed epochs of the latest complete checkpoint, or None."""
        return self._manager.latest_step()

    def all_epochs(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, epoch: int, arrays: Any, meta: dict[str, Any]) -> None:
        """Starts saving checkpoint `epoch` (overwriting nothing: epochs only grow)."""
        self._manager.save(
            epoch,
            args=ocp.args.Composite(
                arrays=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta)
            ),
        )

    def restore(self, epoch: int, template: Any) -> tuple[Any, dict[str, Any]]:
        """Restores checkpoint `epoch` into the structure, dtypes and shardings of `template`."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        out = self._manager.restore(
            epoch,
            args=ocp.args.Composite(
                arrays=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return out["arrays"], dict(out["meta"])

    def wait(self) -> None:
        """Blocks until every pending save is on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        # Opening a manager starts a background deletion of leftover temporary directories that
        # close() does not wait for (only save() does): a Checkpointer closed without saving
        # would race the next one opened on the same directory. orbax has no public call for it.
        await_cleanup = getattr(self._manager, "_maybe_await_cleanup_tmp_directory", None)
        if await_cleanup is not None:
            await_cleanup()
        self._manager.close()
