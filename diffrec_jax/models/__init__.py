"""The model zoo: every model follows the protocol in :mod:`diffrec_jax.models.base`.

Use :func:`get` to look a model up by name and ``get(name).build(**hparams)`` to build it.
"""

from __future__ import annotations

from diffrec_jax.errors import ConfigError
from diffrec_jax.models import adrec as _adrec
from diffrec_jax.models import bprmf as _bprmf
from diffrec_jax.models import diffrec as _diffrec
from diffrec_jax.models import diffurec as _diffurec
from diffrec_jax.models import dreamrec as _dreamrec
from diffrec_jax.models import gru4rec as _gru4rec
from diffrec_jax.models import ldiffrec as _ldiffrec
from diffrec_jax.models import lightgcn as _lightgcn
from diffrec_jax.models import multvae as _multvae
from diffrec_jax.models import sasrec as _sasrec
from diffrec_jax.models import tdiffrec as _tdiffrec
from diffrec_jax.models.base import (
    FitData,
    ModelSpec,
    Params,
    Recommender,
    StepInfo,
    Trainable,
    UserBatch,
)
from diffrec_jax.models.ease import ease
from diffrec_jax.models.gfcf import gfcf
from diffrec_jax.models.graph import p3alpha, rp3beta
from diffrec_jax.models.ials import ials
from diffrec_jax.models.knn import itemknn, userknn
from diffrec_jax.models.slim import slim
from diffrec_jax.models.svd import puresvd
from diffrec_jax.models.toppop import toppop

REGISTRY: dict[str, ModelSpec] = {
    "toppop": ModelSpec("toppop", toppop, {}, "most popular items in train"),
    "ease": ModelSpec("ease", ease, {"lam": 500.0}, "EASE closed-form item-item model"),
    "itemknn": ModelSpec(
        "itemknn",
        itemknn,
        {
            "topk": 50,
            "shrink": 100.0,
            "similarity": "cosine",
            "normalize": True,
            "asymmetric_alpha": 0.5,
            "tversky_alpha": 1.0,
            "tversky_beta": 1.0,
            "feature_weighting": "none",
        },
        "ItemKNN: top-k item-item similarity (cosine, asymmetric, jaccard, dice, tversky)",
    ),
    "userknn": ModelSpec(
        "userknn",
        userknn,
        {
            "topk": 50,
            "shrink": 100.0,
            "similarity": "cosine",
            "normalize": True,
            "asymmetric_alpha": 0.5,
            "tversky_alpha": 1.0,
            "tversky_beta": 1.0,
            "feature_weighting": "none",
        },
        "UserKNN: weighted sum of the top-k most similar users' rows",
    ),
    "p3alpha": ModelSpec(
        "p3alpha",
        p3alpha,
        {"topk": 100, "alpha": 1.0, "normalize": False},
        "P3alpha: item-user-item random-walk probabilities raised to alpha",
    ),
    "rp3beta": ModelSpec(
        "rp3beta",
        rp3beta,
        {"topk": 100, "alpha": 1.0, "beta": 0.6, "normalize": True},
        "RP3beta: P3alpha divided by target popularity^beta",
    ),
    "slim": ModelSpec(
        "slim",
        slim,
        {"topk": 100, "alpha": 1e-2, "l1_ratio": 1e-2, "max_iter": 100, "tol": 1e-4},
        "SLIM ElasticNet: non-negative sparse item-item regression (coordinate descent)",
    ),
    "puresvd": ModelSpec(
        "puresvd", puresvd, {"factors": 50}, "PureSVD: projection on the top singular vectors"
    ),
    "ials": ModelSpec(
        "ials",
        ials,
        {
            "factors": 64,
            "reg": 1e-2,
            "alpha": 10.0,
            "iterations": 15,
            "confidence": "linear",
            "epsilon": 1.0,
            "solver": "cholesky",
            "cg_steps": 3,
            "init_scale": 0.01,
        },
        "iALS: implicit-feedback matrix factorisation by alternating least squares",
    ),
    "gfcf": ModelSpec(
        "gfcf",
        gfcf,
        {"alpha": 0.3, "cutoff": 256},
        "GF-CF: linear plus ideal low-pass graph filters on the item-item graph",
    ),
    "diffrec": ModelSpec(
        "diffrec",
        _diffrec.diffrec_recommender,
        _diffrec.RECOMMENDER_DEFAULTS,
        "DiffRec: Gaussian diffusion on user rows, MLP denoiser",
    ),
    "tdiffrec": ModelSpec(
        "tdiffrec",
        _tdiffrec.tdiffrec_recommender,
        _tdiffrec.RECOMMENDER_DEFAULTS,
        "T-DiffRec: DiffRec on time-weighted train rows",
    ),
    "ldiffrec": ModelSpec(
        "ldiffrec",
        _ldiffrec.ldiffrec_recommender,
        _ldiffrec.RECOMMENDER_DEFAULTS,
        "L-DiffRec: DiffRec in the latent space of k-means item-group VAEs (needs item_emb)",
    ),
    "ltdiffrec": ModelSpec(
        "ltdiffrec",
        _ldiffrec.ltdiffrec_recommender,
        _ldiffrec.LT_RECOMMENDER_DEFAULTS,
        "LT-DiffRec: L-DiffRec on time-weighted train rows (needs item_emb)",
    ),
    "multvae": ModelSpec(
        "multvae",
        _multvae.multvae_recommender,
        _multvae.RECOMMENDER_DEFAULTS,
        "Mult-VAE: variational autoencoder with a multinomial likelihood",
    ),
    "bprmf": ModelSpec(
        "bprmf",
        _bprmf.bprmf_recommender,
        _bprmf.RECOMMENDER_DEFAULTS,
        "BPR-MF: matrix factorisation trained with the BPR pairwise loss",
    ),
    "lightgcn": ModelSpec(
        "lightgcn",
        _lightgcn.lightgcn_recommender,
        _lightgcn.RECOMMENDER_DEFAULTS,
        "LightGCN: BPR-trained embeddings propagated on the user-item graph",
    ),
    "sasrec": ModelSpec(
        "sasrec",
        _sasrec.sasrec_recommender,
        _sasrec.SASREC_DEFAULTS,
        "SASRec: causal self-attention, BCE with one sampled negative (the paper's settings)",
    ),
    "sasrec+": ModelSpec(
        "sasrec+",
        _sasrec.sasrec_plus_recommender,
        _sasrec.SASREC_PLUS_DEFAULTS,
        "SASRec+: SASRec with full-softmax cross entropy (ADRec's comparison settings)",
    ),
    "gru4rec": ModelSpec(
        "gru4rec",
        _gru4rec.gru4rec_recommender,
        _gru4rec.GRU4REC_DEFAULTS,
        "GRU4Rec: GRU over the history, full-softmax cross entropy at every position",
    ),
    "diffurec": ModelSpec(
        "diffurec",
        _diffurec.diffurec_recommender,
        _diffurec.RECOMMENDER_DEFAULTS,
        "DiffuRec: diffusion on the target item embedding, Transformer approximator (sequential)",
    ),
    "dreamrec": ModelSpec(
        "dreamrec",
        _dreamrec.dreamrec_recommender,
        _dreamrec.RECOMMENDER_DEFAULTS,
        "DreamRec: guided diffusion generating the next item embedding (sequential)",
    ),
    "adrec": ModelSpec(
        "adrec",
        _adrec.adrec_recommender,
        _adrec.RECOMMENDER_DEFAULTS,
        "ADRec: causal Transformer + token-level diffusion, 3 training stages (sequential)",
    ),
}


def available() -> list[str]:
    """Names of every registered model."""
    return sorted(REGISTRY)


def get(name: str) -> ModelSpec:
    """The registry entry of model `name`.

    Raises:
      ConfigError: unknown name (the message lists the available models).
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; expected one of {available()}") from None


__all__ = [
    "REGISTRY",
    "FitData",
    "ModelSpec",
    "Params",
    "Recommender",
    "StepInfo",
    "Trainable",
    "UserBatch",
    "available",
    "ease",
    "get",
    "gfcf",
    "ials",
    "itemknn",
    "p3alpha",
    "puresvd",
    "rp3beta",
    "slim",
    "toppop",
    "userknn",
]
