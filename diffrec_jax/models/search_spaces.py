"""Hyperparameter search spaces of the baselines, after the reproducibility literature.

``SEARCH_SPACES[model]`` maps hyperparameter names of the registered model
(:data:`diffrec_jax.models.REGISTRY`) to one of::

    ("int", lo, hi)            uniform integer in [lo, hi]
    ("int_log", lo, hi)        log-uniform integer in [lo, hi], lo >= 1
    ("float", lo, hi)          uniform float in [lo, hi)
    ("float_log", lo, hi)      log-uniform float in [lo, hi), lo > 0
    ("categorical", (c, ...))  one of the choices

(the format of :mod:`diffrec_jax.tuning.space`). Hyperparameters not listed keep their registry
default. Conditional hyperparameters are listed unconditionally and ignored by the model when
they do not apply (e.g. ``tversky_beta`` unless ``similarity="tversky"``).

Ranges follow Ferrari Dacrema, Boglio, Cremonesi, Jannach, "A Troubling Analysis of
Reproducibility and Progress in Recommender Systems Research" (TOIS 2021) and its evaluation
code (RecSys2019_DeepLearning_Evaluation): kNN topK 5-1000 and shrink 0-1000 with the similarity
as a categorical choice, P3alpha/RP3beta alpha and beta uniform in [0, 2], SLIM alpha and
l1_ratio log-uniform in [1e-5, 1], PureSVD 1-350 factors, iALS 1-200 factors with confidence
scale 1-50 and regularisation 1e-5-1e-2 (log-uniform); EASE lambda log-uniform in [1, 1e7]
(Steck 2019 tunes it on a log grid); GF-CF's ideal-filter weight in [0, 1] and its cutoff
log-uniform in [16, 1024] around the authors' 256. Neural baselines: Mult-VAE's learning rate
log-uniform in [1e-4, 1e-2], input dropout in [0, 0.8], KL cap in [0, 1] (Liang et al. pick 0.2
by annealing to 1) and its (latent, hidden) sizes among four layouts around the paper's
(200, 600); BPR-MF 1-200 factors, learning rate log-uniform in [1e-4, 1e-1] and L2 in
[1e-5, 1e-2]; LightGCN 1-4 layers (the paper's range), 16-256 factors (log-uniform, the paper
fixes 64), learning rate log-uniform in [1e-4, 1e-2] and L2 in [1e-6, 1e-2] (the paper's grid).
Sequential baselines (our choice, around the papers' settings): SASRec / SASRec+ learning rate
log-uniform in [1e-4, 1e-2], 1-3 blocks, dropout and embedding dropout in [0, 0.5], the width
among sizes divisible by the head count (SASRec+ also weight decay log-uniform in [1e-6, 1e-3]);
GRU4Rec learning rate log-uniform in [1e-4, 1e-2], 1-2 layers, embedding dropout in [0, 0.5],
embedding and hidden sizes among powers of two. DiffRec and T-DiffRec: the DiffRec paper's grid
(learning rate 1e-5..1e-2 log-uniform, dims [300], [200, 600] or [1000], T in
{2, 5, 10, 40, 50, 100}, noise scale 1e-5..1e-1 log-uniform, noise_min in {5e-4, 1e-3, 5e-3},
noise_max in {1e-2, 2e-2}); L-DiffRec and LT-DiffRec the same diffusion grid with both learning
rates 1e-5..1e-2, lambda in {0.01, 0.03, 0.05, 0.1} and 1-5 item groups. Sequential diffusion
models (for audits that
tune them like their baselines): ADRec and DiffuRec learning rate, dropouts and weight decay with
SASRec+'s ranges (ADRec also the MSE weight log-uniform in [0.1, 10]); DreamRec learning rate,
guidance weight w in [0, 10] (the paper uses 2-4), unconditional probability in [0.05, 0.3]
(the paper's 0.1) and dropout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from diffrec_jax.models.knn import FEATURE_WEIGHTINGS, SIMILARITIES

_KNN = {
    "topk": ("int", 5, 1000),
    "shrink": ("int", 0, 1000),
    "similarity": ("categorical", SIMILARITIES),
    "normalize": ("categorical", (True, False)),
    "asymmetric_alpha": ("float", 0.0, 2.0),
    "tversky_alpha": ("float", 0.0, 2.0),
    "tversky_beta": ("float", 0.0, 2.0),
    "feature_weighting": ("categorical", FEATURE_WEIGHTINGS),
}

_DIFFREC = {
    "lr": ("float_log", 1e-5, 1e-2),
    "dims": ("categorical", ((300,), (200, 600), (1000,))),
    "steps": ("categorical", (2, 5, 10, 40, 50, 100)),
    "noise_scale": ("float_log", 1e-5, 1e-1),
    "noise_min": ("categorical", (5e-4, 1e-3, 5e-3)),
    "noise_max": ("categorical", (1e-2, 2e-2)),
}

_LDIFFREC = {
    "lr1": ("float_log", 1e-5, 1e-2),
    "lr2": ("float_log", 1e-5, 1e-2),
    "lamda": ("categorical", (0.01, 0.03, 0.05, 0.1)),
    "n_cate": ("int", 1, 5),
    **{k: v for k, v in _DIFFREC.items() if k not in ("lr", "dims")},
}

SEARCH_SPACES: Mapping[str, Mapping[str, tuple[Any, ...]]] = {
    "toppop": {},
    "ease": {"lam": ("float_log", 1.0, 1e7)},
    "itemknn": dict(_KNN),
    "userknn": dict(_KNN),
    "p3alpha": {
        "topk": ("int", 5, 1000),
        "alpha": ("float", 0.0, 2.0),
        "normalize": ("categorical", (True, False)),
    },
    "rp3beta": {
        "topk": ("int", 5, 1000),
        "alpha": ("float", 0.0, 2.0),
        "beta": ("float", 0.0, 2.0),
        "normalize": ("categorical", (True, False)),
    },
    "slim": {
        "topk": ("int", 5, 1000),
        "alpha": ("float_log", 1e-5, 1.0),
        "l1_ratio": ("float_log", 1e-5, 1.0),
    },
    "puresvd": {"factors": ("int", 1, 350)},
    "ials": {
        "factors": ("int", 1, 200),
        "alpha": ("float_log", 1.0, 50.0),
        "reg": ("float_log", 1e-5, 1e-2),
        "confidence": ("categorical", ("linear", "log")),
        "epsilon": ("float_log", 1e-3, 10.0),
    },
    "gfcf": {
        "alpha": ("float", 0.0, 1.0),
        "cutoff": ("int_log", 16, 1024),
    },
    "multvae": {
        "lr": ("float_log", 1e-4, 1e-2),
        "dropout": ("float", 0.0, 0.8),
        "anneal_cap": ("float", 0.0, 1.0),
        "dims": ("categorical", ((200,), (100, 300), (200, 600), (400, 1200))),
    },
    "bprmf": {
        "factors": ("int", 1, 200),
        "lr": ("float_log", 1e-4, 1e-1),
        "reg": ("float_log", 1e-5, 1e-2),
    },
    "lightgcn": {
        "n_layers": ("int", 1, 4),
        "factors": ("int_log", 16, 256),
        "lr": ("float_log", 1e-4, 1e-2),
        "reg": ("float_log", 1e-6, 1e-2),
    },
    "sasrec": {
        "lr": ("float_log", 1e-4, 1e-2),
        "d": ("categorical", (32, 50, 64, 128)),
        "n_blocks": ("int", 1, 3),
        "dropout": ("float", 0.0, 0.5),
        "emb_dropout": ("float", 0.0, 0.5),
    },
    "sasrec+": {
        "lr": ("float_log", 1e-4, 1e-2),
        "d": ("categorical", (64, 128, 256)),
        "n_blocks": ("int", 1, 3),
        "dropout": ("float", 0.0, 0.5),
        "emb_dropout": ("float", 0.0, 0.5),
        "weight_decay": ("float_log", 1e-6, 1e-3),
    },
    "gru4rec": {
        "lr": ("float_log", 1e-4, 1e-2),
        "d": ("categorical", (32, 64, 128)),
        "hidden": ("categorical", (64, 128, 256)),
        "n_layers": ("int", 1, 2),
        "emb_dropout": ("float", 0.0, 0.5),
    },
    # DiffRec and T-DiffRec: the grid of the DiffRec paper (Wang et al., SIGIR 2023); noise_max
    # 5e-3 is left out (with noise_min 5e-3 it gives zero betas); sampling_steps stays at the
    # released 0 (the audit's diagnostics vary it on the trained model).
    "diffrec": dict(_DIFFREC),
    "tdiffrec": dict(_DIFFREC),
    # L-DiffRec and LT-DiffRec: DiffRec's diffusion grid, both learning rates, the diffusion
    # loss weight and the number of item groups.
    "ldiffrec": dict(_LDIFFREC),
    "ltdiffrec": dict(_LDIFFREC),
    # Sequential diffusion models: the knobs their papers tune, with SASRec+'s ranges where shared.
    "adrec": {
        "lr": ("float_log", 1e-4, 1e-2),
        "dropout": ("float", 0.0, 0.5),
        "emb_dropout": ("float", 0.0, 0.5),
        "weight_decay": ("float_log", 1e-6, 1e-3),
        "loss_scale": ("float_log", 0.1, 10.0),
    },
    "diffurec": {
        "lr": ("float_log", 1e-4, 1e-2),
        "dropout": ("float", 0.0, 0.5),
        "emb_dropout": ("float", 0.0, 0.5),
        "weight_decay": ("float_log", 1e-6, 1e-3),
    },
    "dreamrec": {
        "lr": ("float_log", 1e-4, 1e-2),
        "w": ("float", 0.0, 10.0),
        "p_uncond": ("float", 0.05, 0.3),
        "dropout": ("float", 0.0, 0.5),
    },
}

__all__ = ["SEARCH_SPACES"]
