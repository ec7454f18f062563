"""A seconds-long DiffRec + T-DiffRec run on synthetic data (tests and smoke checks).

  python experiments/run.py --config=experiments/configs/diffrec_tiny.py --output_dir=/tmp/tiny

``synthetic-small`` (300 users x 200 items, with timestamps, so T-DiffRec's chronological weights
apply), a small denoiser, 3 epochs validated every epoch.
"""

from __future__ import annotations

from diffrec_jax.experiment import RunConfig

SMALL = {
    "dims": [(32,)],
    "emb_size": [4],
    "steps": [5],
    "noise_scale": [0.1],
    "noise_min": [0.01],
    "noise_max": [0.1],
    "batch_size": [128],
    "max_epochs": [3],
    "eval_every": [1],
}


def get_config() -> RunConfig:
    return RunConfig(
        models=("diffrec", "tdiffrec"),
        dataset="synthetic-small",
        seeds=(0,),
        hparams={
            "diffrec": {**SMALL, "lr": [3e-3]},
            "tdiffrec": {**SMALL, "w_min": [0.5], "w_max": [1.0]},
        },
        output_dir="results",
    )
