"""The DiffRec claim on ML-1M clean, audited against eleven tuned baselines.

  python experiments/audit.py --config=experiments/configs/audit_diffrec_ml1m.py \
      --output_dir=results/audit-diffrec-ml1m

Smoke version (2 trials per model, 2 seeds, at most 2 epochs; minutes, not hours):

  python experiments/audit.py --config=experiments/configs/audit_diffrec_ml1m.py --smoke \
      --output_dir=/tmp/audit-diffrec-ml1m-smoke

Data: the DiffRec release's ML-1M clean split (``<repo>/../shared/data``), item embeddings not
needed. Every model gets 50 TPE trials (optuna; the ``tuning`` extra) on validation Recall@20
with seed 0, then 5 training seeds of its chosen configuration on test.

DiffRec's search space follows the grid of the DiffRec paper (Wang et al., SIGIR 2023):
learning rate 1e-5..1e-2 (log), dims [300], [200, 600] or [1000], T in {2, 5, 10, 40, 50, 100},
noise scale 1e-5..1e-1 (log), noise_min in {5e-4, 1e-3, 5e-3}, noise_max in {1e-2, 2e-2} (the
paper's 5e-3 is left out: with noise_min 5e-3 it gives zero betas); sampling_steps is fixed at
the released 0 (the diagnostics vary it on the trained model). Everything else is the released
configuration (batch 400, up to 1000 epochs, validation every 5, stop 20 epochs after the best).
The baselines use their default spaces (:mod:`diffrec_jax.models.search_spaces`).

Reported numbers: the DiffRec paper, Table 2, ML-1M clean (quoted from memory in
``shared/reference/diffrec-family.md``; treat as approximate). The paper's convention divides by
all users; on this split every user has test items, so it equals the RecBole convention used here.
"""

from __future__ import annotations

from pathlib import Path

from diffrec_jax.audit import AuditConfig
from diffrec_jax.models.search_spaces import SEARCH_SPACES

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "diffrec-ml-1m_clean"

BASELINES = (
    "toppop",
    "itemknn",
    "userknn",
    "rp3beta",
    "ease",
    "slim",
    "ials",
    "puresvd",
    "gfcf",
    "multvae",
    "lightgcn",
)

DIFFREC_SPACE = dict(SEARCH_SPACES["diffrec"])  # the paper's grid, the registry entry's space

DIFFREC_FIXED = {
    "weight_decay": 0.0,
    "emb_size": 10,
    "noise_schedule": "linear-var",
    "mean_type": "x0",
    "sampling_steps": 0,
    "sampling_noise": False,
    "reweight": True,
    "norm": False,
    "batch_size": 400,
    "max_epochs": 1000,
    "eval_every": 5,
    "patience": 3,
}


def get_config() -> AuditConfig:
    return AuditConfig(
        name="diffrec-ml1m",
        dataset=f"diffrec:{DATA}",
        target="diffrec",
        baselines=BASELINES,
        reported={"Recall@10": 0.1058, "Recall@20": 0.1787, "NDCG@10": 0.0901, "NDCG@20": 0.1148},
        reported_source="DiffRec paper (Wang et al., SIGIR 2023), ML-1M clean",
        spaces={"diffrec": DIFFREC_SPACE},
        fixed={"diffrec": DIFFREC_FIXED},
        budget=50,
        method="tpe",
        seeds=(1, 2, 3, 4, 5),
        select_metric="Recall@20",
        ks=(10, 20),
        metrics=("Recall@10", "Recall@20", "NDCG@10", "NDCG@20"),
        output_dir="results/audit-diffrec-ml1m",
    )
