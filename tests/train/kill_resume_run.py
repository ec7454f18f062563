"""Trains a small DiffRec with a checkpoint every epoch; writes its final results.

Run as a subprocess by test_kill_resume.py, which kills it with SIGKILL and runs the same
command again:

  python kill_resume_run.py OUT_DIR CHECKPOINT_DIR

OUT_DIR receives results.json (validation history, valid and test metrics of the best
parameters) and params.npz (the final and best parameters), both written atomically once
training has finished. Every epoch ends with a short pause, so that a test can kill the
process between its first checkpoint and its end; the pause changes no result.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import numpy as np

from diffrec_jax.data.datasets import load_dataset
from diffrec_jax.evaluation import Evaluator
from diffrec_jax.models.diffrec import diffrec
from diffrec_jax.protocol import FitData
from diffrec_jax.results import atomic_write, write_json_atomic
from diffrec_jax.train import TrainConfig, train

EPOCH_PAUSE_SECONDS = 0.4


def main(out_dir: str, checkpoint_dir: str) -> None:
    out = Path(out_dir)
    split = load_dataset("synthetic-small", seed=1).split
    config = TrainConfig(
        batch_size=64,
        max_epochs=5,
        eval_every=1,
        patience=None,
        seed=5,
        eval_batch_size=100,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=1,
        keep_checkpoints=2,
    )
    model = diffrec(lr=3e-3, dims=(32,), emb_size=8, steps=10, noise_scale=0.1)
    epochs = []

    def on_epoch(record):
        epochs.append(record.epoch)
        time.sleep(EPOCH_PAUSE_SECONDS)

    result = train(model, FitData(split.train, split.valid), config, on_epoch=on_epoch)
    final = Evaluator(split, ks=(10, 20), batch_size=100).evaluate(model.score, result.params)
    arrays = {f"final_{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(result.state))}
    arrays |= {f"best_{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(result.params))}
    with atomic_write(out / "params.npz", "wb") as f:
        np.savez(f, **arrays)
    write_json_atomic(
        out / "results.json",
        {
            "epochs_trained_here": epochs,
            "best_epoch": result.best_epoch,
            "history": [
                {"epoch": r.epoch, "loss": r.loss, "valid": r.metrics, "aux": r.aux}
                for r in result.history
            ],
            "valid": final["valid"].summary,
            "test": final["test"].summary,
        },
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
