"""Trains a small DiffRec in one process of a (possibly) multi-process JAX run; saves the result.

Run as subprocesses by test_multihost.py:

  JAX_NUM_CPU_DEVICES=2 python multihost_run.py OUT.npz --num_processes=2 --process_id=0 \
      --coordinator=localhost:PORT --checkpoint_dir=DIR
  JAX_NUM_CPU_DEVICES=4 python multihost_run.py OUT.npz            # the single-process reference

With --num_processes > 1 the process joins the distributed run first (CPU collectives over
gloo); the training code is the same in both cases.
"""

from __future__ import annotations

import argparse
import json

import jax


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--num_processes", type=int, default=1)
    parser.add_argument("--process_id", type=int, default=0)
    parser.add_argument("--coordinator", default="")
    parser.add_argument("--checkpoint_dir", default=None)
    parser.add_argument("--max_epochs", type=int, default=3)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.num_processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
            initialization_timeout=60,
        )
    import numpy as np

    from diffrec_jax.data.datasets import load_dataset
    from diffrec_jax.models.diffrec import diffrec
    from diffrec_jax.protocol import FitData
    from diffrec_jax.train import TrainConfig, train
    from diffrec_jax.train.sharding import data_mesh

    split = load_dataset("synthetic-small", seed=3).split
    config = TrainConfig(
        batch_size=64,  # 300 users: 5 steps per epoch, the last one padded
        max_epochs=args.max_epochs,
        eval_every=1,
        patience=None,
        seed=4,
        eval_batch_size=128,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=1,
    )
    model = diffrec(lr=3e-3, dims=(32,), emb_size=8, steps=10, noise_scale=0.1)
    epochs_here = []  # the epochs this invocation trains (not those it resumes)
    data = FitData(split.train, split.valid)
    result = train(model, data, config, on_epoch=lambda r: epochs_here.append(r.epoch))
    leaves = jax.tree.leaves(result.state.params)
    np.savez(
        args.out,
        **{f"param_{i}": np.asarray(x) for i, x in enumerate(leaves)},
        process_count=jax.process_count(),
        device_count=jax.device_count(),
        mesh_size=data_mesh().devices.size,
        history=json.dumps([r._asdict() | {"seconds": 0.0} for r in result.history]),
        epochs_here=np.asarray(epochs_here, np.int32),
    )
    if args.num_processes > 1:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main()
