"""Data parallelism: one mesh axis "data" over every device, on one host or several.

The batch is sharded along its first axis; parameters, optimiser state and model state are
replicated. Under ``jax.jit`` XLA partitions the step and inserts the gradient all-reduce, so a
model is written as if for one device. The mesh axis is of type ``Auto`` (sharding propagated by
the compiler), so model code needs no sharding annotations.

The same functions serve one process and several (``jax.distributed.initialize``; the default
mesh then spans the devices of every process). With one process, or a mesh of this process's
devices only, arrays are placed with ``jax.device_put`` as usual. With a mesh spanning several
processes, every process runs the same program on the same global batch indices:

- :func:`process_rows` tells which rows of the global batch this process's devices hold; the
  process builds (densifies) only those rows, and :func:`put_batch` assembles the global batch
  with ``jax.make_array_from_process_local_data``;
- :func:`put_replicated` places a value computed identically on every process (initial
  parameters, keys) on every device, from this process's copy;
- :func:`addressable` gives a process-local copy of replicated arrays (e.g. for evaluation,
  which every process then runs on its own devices).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from diffrec_jax.errors import ConfigError

DATA_AXIS = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named "data" over `devices` (default: all devices of all processes)."""
    devices = list(jax.devices() if devices is None else devices)
    return jax.make_mesh(
        (len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices
    )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Shards the leading (batch) axis over the "data" axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """Replicates an array on every device of `mesh`."""
    return NamedSharding(mesh, PartitionSpec())


def is_multiprocess(mesh: Mesh) -> bool:
    """True when `mesh` holds devices of other processes (arrays on it are not addressable)."""
    return any(d.process_index != jax.process_index() for d in mesh.devices.flat)


def device_batch_size(batch_size: int, n_devices: int) -> int:
    """Rows of a global batch of `batch_size` examples on `n_devices`: rounded up to a multiple
    of the device count (the extra rows repeat examples with weight 0)."""
    return -(-int(batch_size) // n_devices) * n_devices


def process_rows(mesh: Mesh, batch_size: int) -> slice:
    """The rows of a global batch of `batch_size` that this process feeds to :func:`put_batch`.

    All rows with one process; with several, the contiguous block held by this process's
    devices (`batch_size`: the rows of the global batch, a multiple of the number of devices,
    see :func:`device_batch_size`).

    Raises:
      ConfigError: this process's devices do not hold one contiguous block of the batch (a mesh
        whose device order interleaves processes).
    """
    if not is_multiprocess(mesh):
        return slice(0, batch_size)
    index_map = batch_sharding(mesh).addressable_devices_indices_map((batch_size,))
    blocks = set()
    for idx in index_map.values():
        assert idx is not None  # typed Optional by jax; every addressable device holds a block
        blocks.add((idx[0].start or 0, idx[0].stop or batch_size))
    spans = sorted(blocks)
    for (_, stop), (start, _) in zip(spans, spans[1:], strict=False):
        if stop != start:
            raise ConfigError(
                f"process {jax.process_index()} holds rows {spans} of the batch, not one "
                "contiguous block; build the mesh with each process's devices adjacent"
            )
    return slice(spans[0][0], spans[-1][1])


def put_batch(arrays, mesh: Mesh, batch_size: int | None = None):
    """Places a pytree of host arrays on `mesh`, sharded along their leading axis.

    Args:
      arrays: a pytree of arrays with a leading batch axis. With one process: the whole batch.
        With a mesh spanning several processes: this process's rows (``process_rows``).
      mesh: the data mesh.
      batch_size: the global batch size; needed only with several processes.
    """
    sharding = batch_sharding(mesh)
    if not is_multiprocess(mesh):
        return jax.tree.map(lambda a: jax.device_put(np.asarray(a), sharding), arrays)
    if batch_size is None:
        raise ValueError("put_batch over several processes needs the global batch_size")

    def put(a):
        a = np.asarray(a)
        return jax.make_array_from_process_local_data(sharding, a, (batch_size, *a.shape[1:]))

    return jax.tree.map(put, arrays)


def put_replicated(tree, mesh: Mesh):
    """Places a pytree on every device of `mesh`.

    With several processes every process must pass the same values (computed identically, e.g.
    from the same key); each places its own copy on its devices.
    """
    sharding = replicated(mesh)
    if not is_multiprocess(mesh):
        return jax.device_put(tree, sharding)

    def put(x):
        x = x if isinstance(x, jax.Array) else np.asarray(x)
        # One copy per addressable device, in the sharding's device order.
        devices = sharding.addressable_devices_indices_map(x.shape)
        shards = [jax.device_put(x, d) for d in devices]
        return jax.make_array_from_single_device_arrays(x.shape, sharding, shards)

    return jax.tree.map(put, tree)


def addressable(tree):
    """A copy of replicated arrays on this process's first device, if they span processes.

    Arrays that are fully addressable are returned unchanged (so one process never copies).
    """

    def local(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if not x.is_fully_replicated:
                raise ValueError(f"expected a replicated array, got sharding {x.sharding}")
            return x.addressable_data(0)
        return x

    return jax.tree.map(local, tree)
