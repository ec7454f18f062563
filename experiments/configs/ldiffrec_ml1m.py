"""L-DiffRec on the DiffRec ML-1M clean split with the released hyperparameters.

  python experiments/run.py --config=experiments/configs/ldiffrec_ml1m.py --seeds=1,2,3,4,5

The values are those of the released ML-1M clean checkpoint (Wang et al., SIGIR 2023; its file
name ``ml-1m_clean_0.001lr1_0.0005lr2_0.0wd1_0.0wd2_bs400_cate2_in[300]_out[]_lam0.03_dims[300]_
emb10_x0_steps40_scale0.005_min0.005_max0.02_sample0_reweight1``): AdamW lr1 1e-3 (encoders and
decoder) and lr2 5e-4 (denoiser), weight decays 0, 2 k-means item groups on the release's
LightGCN ``item_emb.npy``, latent 300, denoiser MLP [300], time embedding 10, lambda 0.03
annealed to 0.005 over 500 epochs, KL weight annealed to 0.3 over 200 steps, T = 40 linear-var
steps with scale 0.005, noise 0.005 .. 0.02, no beta fixing, x0 prediction, loss reweighting,
sampling_steps 0; batch 400, validation Recall@20 every 5 epochs, stop 20 epochs after the best.
The item embeddings come from the dataset (``Dataset.extras["item_emb"]``). The data are read
from ``<repo>/../shared/data``.
"""

from __future__ import annotations

from pathlib import Path

from diffrec_jax.experiment import RunConfig

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "diffrec-ml-1m_clean"

HPARAMS = {
    "lr1": 1e-3,
    "lr2": 5e-4,
    "wd1": 0.0,
    "wd2": 0.0,
    "n_cate": 2,
    "latent_size": 300,
    "mlp_dims": (300,),
    "emb_size": 10,
    "lamda": 0.03,
    "anneal_cap": 0.005,
    "anneal_steps": 500,
    "vae_anneal_cap": 0.3,
    "vae_anneal_steps": 200,
    "steps": 40,
    "noise_schedule": "linear-var",
    "noise_scale": 0.005,
    "noise_min": 0.005,
    "noise_max": 0.02,
    "beta_fixed": False,
    "mean_type": "x0",
    "reweight": True,
    "sampling_steps": 0,
    "sampling_noise": False,
    "kmeans_init": "random",
    "kmeans_seed": 1,  # the original's np.random.seed(1): the same initial centres
    "batch_size": 400,
    "max_epochs": 1000,
    "eval_every": 5,
    "patience": 3,  # the original stops 20 epochs after its best one: 3 more evaluations
}


def get_config() -> RunConfig:
    return RunConfig(
        models=("ldiffrec",),
        dataset=f"diffrec:{DATA}",
        seeds=(1,),
        hparams={"ldiffrec": {name: [value] for name, value in HPARAMS.items()}},
        ks=(10, 20),
        select_metric="Recall@20",
        output_dir="results",
    )
