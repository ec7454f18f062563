"""Trains a small DiffRec on however many devices JAX sees, recording its random stream.

Run as a subprocess by test_diffrec_devices.py (the device count is fixed when JAX starts):
``JAX_NUM_CPU_DEVICES=8 python diffrec_device_run.py OUT.npz``.

Records, per step, what the model actually drew: the step key, the batch (users, weights), the
sampled timesteps and the Gaussian noise (by wrapping ``gaussian.sample_timesteps`` and
``gaussian.q_sample``, which DiffRec's loss looks up at trace time); and the Evaluator's
metrics of fixed parameters and of the trained ones, with and without inference noise.
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np

from diffrec_jax.data.datasets import load_dataset
from diffrec_jax.diffusion import gaussian
from diffrec_jax.evaluation import Evaluator
from diffrec_jax.models.diffrec import diffrec
from diffrec_jax.protocol import FitData, Trainable
from diffrec_jax.train import TrainConfig, sharding, train

# 300 users in batches of 40 (divisible by 8): 8 steps per epoch, the last one padded. No
# validation (test_train_devices.py covers it); the Evaluator is checked after training.
CONFIG = TrainConfig(batch_size=40, max_epochs=2, patience=None, seed=21)
HPARAMS = dict(lr=3e-3, dims=(32,), emb_size=8, steps=5, noise_scale=0.1)

traced: dict[str, jax.Array] = {}  # values of the loss being traced, set by the wrappers
records: list[dict[str, np.ndarray]] = []


def _recording(name, fn, pick):
    def wrapper(*args, **kwargs):
        out = fn(*args, **kwargs)
        traced[name] = pick(args, out)
        return out

    return wrapper


gaussian.sample_timesteps = _recording("t", gaussian.sample_timesteps, lambda a, out: out[0])
gaussian.q_sample = _recording("noise", gaussian.q_sample, lambda a, out: a[3])


def recorded(model: Trainable) -> Trainable:
    """`model` whose loss reports the step's draws to the host (once per step, full arrays)."""

    def loss(params, state, batch, key, info):
        traced.clear()
        out = model.loss(params, state, batch, key, info)
        values = dict(
            step=info.step,
            key=jax.random.key_data(key),
            users=batch.users,
            weights=batch.weights,
            t=traced["t"],
            noise=traced["noise"],
            importance=gaussian.history_full(state),  # timesteps from the loss history
        )
        jax.debug.callback(lambda v: records.append(jax.tree.map(np.asarray, v)), values)
        return out

    return model._replace(loss=loss)


def metrics(split, model, params, mesh) -> dict[str, dict[str, float]]:
    """Valid and test summaries of `params` replicated on `mesh`, as the loop hands them over."""
    params = sharding.put_replicated(params, mesh)
    results = Evaluator(split, batch_size=37).evaluate(model.score, params)
    return {part: {k: float(v) for k, v in r.summary.items()} for part, r in results.items()}


def main(out_path: str) -> None:
    split = load_dataset("synthetic-small", seed=2).split
    model = diffrec(**HPARAMS)
    noisy = diffrec(**HPARAMS, sampling_steps=2, sampling_noise=True, sampling_seed=3)
    mesh = sharding.data_mesh()
    result = train(recorded(model), FitData(split.train), CONFIG)
    jax.effects_barrier()
    fixed, _ = model.init(jax.random.key(7), split.n_items)
    evaluated = {
        "fixed": metrics(split, model, fixed, mesh),
        "fixed_noisy": metrics(split, noisy, fixed, mesh),
        "trained": metrics(split, model, result.params, mesh),
    }
    records.sort(key=lambda r: int(r["step"]))
    stream = {k: np.stack([r[k] for r in records]) for k in records[0]}
    np.savez(
        out_path,
        **{f"stream_{k}": v for k, v in stream.items()},
        n_devices=len(jax.devices()),
        mesh_size=mesh.devices.size,
        metrics=json.dumps(evaluated),
    )


if __name__ == "__main__":
    main(sys.argv[1])
