"""A seconds-long audit on synthetic data, for tests and CI (not a claim about any model).

  python experiments/audit.py --config=experiments/configs/audit_tiny.py --output_dir=/tmp/audit

``synthetic-small`` (300 users x 200 items): a tiny DiffRec (5 diffusion steps, one hidden
layer of 32, 3 epochs) against TopPop and EASE, 2 random trials per model, 2 seeds, 2 sampling
seeds per stochastic diagnostic, one step count (T). The "reported" numbers are made up to
exercise the verdicts.
"""

from __future__ import annotations

from diffrec_jax.audit import AuditConfig

TINY_DIFFREC = {
    "dims": (32,),
    "emb_size": 4,
    "steps": 5,
    "noise_scale": 0.1,
    "noise_min": 0.01,
    "noise_max": 0.1,
    "batch_size": 128,
    "max_epochs": 3,
    "eval_every": 1,
}


def get_config() -> AuditConfig:
    return AuditConfig(
        name="tiny",
        dataset="synthetic-small",
        target="diffrec",
        baselines=("toppop", "ease"),
        reported={"Recall@20": 0.2, "NDCG@20": 0.15},
        reported_source="made-up numbers that exercise the verdicts (synthetic data)",
        spaces={"diffrec": {"lr": ("float_log", 1e-3, 1e-2)}},
        fixed={"diffrec": TINY_DIFFREC},
        budget=2,
        method="random",
        seeds=(1, 2),
        diag_step_fractions=(1.0,),
        diag_sampling_seeds=2,
        output_dir="results/audit-tiny",
    )
