"""Trains the toy model on however many devices JAX sees and writes the outcome to a .npz.

Run as a subprocess by test_train_devices.py (the device count is fixed when JAX starts):
``JAX_NUM_CPU_DEVICES=8 python train_device_run.py OUT.npz``.
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np
from train_toy_model import toy_autoencoder, toy_data

from diffrec_jax.train import TrainConfig, train
from diffrec_jax.train.sharding import data_mesh

CONFIG = TrainConfig(
    batch_size=16, max_epochs=3, eval_every=1, patience=None, seed=11, eval_batch_size=16
)


def main(out_path: str) -> None:
    n_devices = len(jax.devices())
    result = train(toy_autoencoder(), toy_data(seed=2), CONFIG)
    # A batch that does not split over the devices trains on zero-weight padding rows.
    odd = train(toy_autoencoder(), toy_data(seed=2), CONFIG.replace(batch_size=n_devices + 1))
    odd_rows = int(odd.state.model_state["rows_seen"])
    arrays = {f"param_{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(result.params))}
    history = [r._asdict() | {"seconds": 0.0} for r in result.history]
    np.savez(
        out_path,
        **arrays,
        n_devices=n_devices,
        mesh_size=data_mesh().devices.size,
        history=json.dumps(history),
        best_epoch=result.best_epoch,
        odd_rows=odd_rows,
        rows_seen=int(result.state.model_state["rows_seen"]),
    )


if __name__ == "__main__":
    main(sys.argv[1])
