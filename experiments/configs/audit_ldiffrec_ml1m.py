"""The L-DiffRec claim on ML-1M clean, audited against eleven tuned baselines.

  python experiments/audit.py --config=experiments/configs/audit_ldiffrec_ml1m.py \
      --output_dir=results/audit-ldiffrec-ml1m

Data: the DiffRec release's ML-1M clean split with its LightGCN item embeddings
(``item_emb.npy``, L-DiffRec's k-means input, passed to the model as side data). Every model
gets 50 TPE trials on validation Recall@20 with seed 0, then 5 training seeds on test. The
baselines are those of ``audit_diffrec_ml1m.py`` (same spaces, same seed: reusing that audit's
output directory reuses their studies and runs).

L-DiffRec's search space: the two learning rates 1e-5..1e-2 (log), lambda (diffusion loss
weight) in {0.01, 0.03, 0.05, 0.1}, n_cate (item groups) 1..5, T in {2, 5, 10, 40, 50, 100},
noise scale 1e-5..1e-1 (log), noise_min in {5e-4, 1e-3, 5e-3}, noise_max in {1e-2, 2e-2};
the rest is the released ML-1M configuration (latent 300, denoiser [300], batch 400, up to 1000
epochs, validation every 5, stop 20 epochs after the best).

Reported numbers: the released ML-1M checkpoint's inference log (``shared/reference/
diffrec-family.md``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from diffrec_jax.audit import AuditConfig, load_config
from diffrec_jax.models.search_spaces import SEARCH_SPACES

# Same data, baselines and protocol (budget, method, seeds, metrics) as the DiffRec audit.
DIFFREC_AUDIT = Path(__file__).resolve().with_name("audit_diffrec_ml1m.py")

LDIFFREC_SPACE = dict(SEARCH_SPACES["ldiffrec"])  # the registry entry's space

LDIFFREC_FIXED = {
    "wd1": 0.0,
    "wd2": 0.0,
    "latent_size": 300,
    "mlp_dims": (300,),
    "emb_size": 10,
    "anneal_cap": 0.005,
    "anneal_steps": 500,
    "vae_anneal_cap": 0.3,
    "vae_anneal_steps": 200,
    "noise_schedule": "linear-var",
    "beta_fixed": False,
    "mean_type": "x0",
    "reweight": True,
    "sampling_steps": 0,
    "sampling_noise": False,
    "kmeans_init": "random",
    "kmeans_seed": 1,
    "batch_size": 400,
    "max_epochs": 1000,
    "eval_every": 5,
    "patience": 3,
}


def get_config() -> AuditConfig:
    return dataclasses.replace(
        load_config(DIFFREC_AUDIT),
        name="ldiffrec-ml1m",
        target="ldiffrec",
        reported={"Recall@10": 0.1060, "Recall@20": 0.1809, "NDCG@10": 0.0868, "NDCG@20": 0.1122},
        reported_source="L-DiffRec release, ML-1M clean checkpoint's inference log",
        spaces={"ldiffrec": LDIFFREC_SPACE},
        fixed={"ldiffrec": LDIFFREC_FIXED},
        output_dir="results/audit-ldiffrec-ml1m",
    )
