"""Data parallelism: one mesh axis "data" over every visible device.

The batch is sharded along its first axis; parameters, optimiser state and model state are
replicated. Under ``jax.jit`` XLA partitions the step and inserts the gradient all-reduce, so a
model is written as if for one device. The mesh axis is of type ``Auto`` (sharding propagated by
the compiler), so model code needs no sharding annotations.

Single host only: a multi-host run would build batches with
``jax.make_array_from_process_local_data`` instead of :func:`put_batch`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from diffrec_jax.errors import ConfigError

DATA_AXIS = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named "data" over `devices` (default: all visible devices)."""
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


def check_batch_size(batch_size: int, n_devices: int) -> None:
    """Raises ConfigError unless `batch_size` splits evenly over `n_devices`."""
    if batch_size % n_devices:
        lower = batch_size - batch_size % n_devices
        raise ConfigError(
            f"TrainConfig.batch_size={batch_size} is not divisible by the number "
            f"of devices ({n_devices}); use e.g. {lower or n_devices} or "
            f"{lower + n_devices}"
        )


def put_batch(arrays, mesh: Mesh):
    """Places a pytree of host arrays on `mesh`, sharded along their leading axis."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda a: jax.device_put(np.asarray(a), sharding), arrays)


def put_replicated(tree, mesh: Mesh):
    """Places a pytree on every device of `mesh`."""
    return jax.device_put(tree, replicated(mesh))
