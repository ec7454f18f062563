"""DiffRec on the DiffRec ML-1M clean split with the released hyperparameters.

  python experiments/run.py --config=experiments/configs/diffrec_ml1m.py --seeds=1,2,3,4,5

The values are those of the released ML-1M clean run (Wang et al., SIGIR 2023): AdamW lr 1e-3,
weight decay 0, MLP dims [200, 600], time embedding 10, T = 40 linear-var steps with scale 0.005,
noise 0.005 .. 0.01, x0 prediction, loss reweighting, sampling_steps 0 (inference starts from the
train row), no input normalisation; batch 400, validation Recall@20 every 5 epochs, stop after
20 epochs without improvement. The data are read from ``<repo>/../shared/data``.
"""

from __future__ import annotations

from pathlib import Path

from diffrec_jax.experiment import RunConfig

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "diffrec-ml-1m_clean"

HPARAMS = {
    "lr": 1e-3,
    "weight_decay": 0.0,
    "dims": (200, 600),
    "emb_size": 10,
    "steps": 40,
    "noise_schedule": "linear-var",
    "noise_scale": 0.005,
    "noise_min": 0.005,
    "noise_max": 0.01,
    "mean_type": "x0",
    "sampling_steps": 0,
    "sampling_noise": False,
    "reweight": True,
    "norm": False,
    "batch_size": 400,
    "max_epochs": 1000,
    "eval_every": 5,
    "patience": 3,  # the original stops 20 epochs after its best one: 3 more evaluations
}


def get_config() -> RunConfig:
    return RunConfig(
        models=("diffrec",),
        dataset=f"diffrec:{DATA}",
        seeds=(1,),
        hparams={"diffrec": {name: [value] for name, value in HPARAMS.items()}},
        ks=(10, 20),
        select_metric="Recall@20",
        output_dir="results",
    )
