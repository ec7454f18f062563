"""The model zoo: every model follows the protocol in :mod:`diffrec_jax.models.base`.

Use :func:`get` to look a model up by name and ``get(name).build(**hparams)`` to build it.
"""

from __future__ import annotations

from diffrec_jax.errors import ConfigError
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
from diffrec_jax.models.toppop import toppop

REGISTRY: dict[str, ModelSpec] = {
    "toppop": ModelSpec("toppop", toppop, {}, "most popular items in train"),
    "ease": ModelSpec("ease", ease, {"lam": 500.0}, "EASE closed-form item-item model"),
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
    "toppop",
]
