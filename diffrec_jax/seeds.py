"""One seed, one key: how every integer seed of the library becomes a JAX key.

:func:`key` maps ``(seed, purpose)`` to a typed key, and it is the only place that does: the
same ``--seeds=3`` therefore gives the same fit from ``run``, ``tune`` and ``audit``::

    key(seed, "fit")        the model's fit (initialisation, step keys, batch order; every
                            grid point and every tuning trial of that seed gets this key)
    key(seed, "sampling")   inference noise of generative scoring (a model's ``sampling_seed``
                            hyperparameter), folded with the user index by :func:`user_keys`

(Numpy generators seeded with plain integers draw what is not a JAX computation: the data
seed's synthetic data and random splits, and a tuning study's hyperparameter proposals.)

A key is ``fold_in(jax.random.key(seed), PURPOSES[purpose])``. Seeds are checked first
(:func:`check_seed`): a negative seed, a non-integer or one of 2**32 or more is refused, because
``jax.random.key`` reduces seeds modulo 2**32 and two different seeds would silently give the
same runs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffrec_jax.errors import ConfigError

SEED_LIMIT = 2**32
"""Seeds are integers in [0, SEED_LIMIT)."""

PURPOSES: dict[str, int] = {"fit": 0, "sampling": 1}
"""What a key is for, and the integer folded into the seed's key for it."""


def check_seed(seed: Any, where: str = "seed") -> int:
    """`seed` as an int if it is an integer in [0, 2**32).

    Args:
      seed: the value to check (bools are refused).
      where: the flag or field named in the error, e.g. "--seeds".

    Raises:
      ConfigError: naming `where`, the value and what was expected.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ConfigError(f"{where}={seed!r}; expected a non-negative integer below 2**32")
    if not 0 <= int(seed) < SEED_LIMIT:
        raise ConfigError(
            f"{where}={seed!r}; expected a non-negative integer below 2**32 (larger seeds "
            "would alias smaller ones modulo 2**32)"
        )
    return int(seed)


def key(seed: int, purpose: str) -> jax.Array:
    """The typed key of `seed` for `purpose` (one of :data:`PURPOSES`).

    Raises:
      ConfigError: a bad seed or an unknown purpose.
    """
    if purpose not in PURPOSES:
        raise ConfigError(f"purpose={purpose!r}; expected one of {sorted(PURPOSES)}")
    return jax.random.fold_in(jax.random.key(check_seed(seed)), PURPOSES[purpose])


def user_keys(base: jax.Array, users: jax.Array) -> jax.Array:
    """[B] typed keys ``fold_in(base, user)``: one independent noise stream per user.

    A user's draws depend only on `base` and the user's index, never on the batch the user is
    scored in. Jit-able.

    Args:
      base: a typed key, e.g. ``key(sampling_seed, "sampling")``.
      users: [B] integer user indices.
    """
    return jax.vmap(lambda u: jax.random.fold_in(base, u))(jnp.asarray(users).astype(jnp.uint32))


def sampling_keys(sampling_seed: int, users: jax.Array) -> jax.Array:
    """[B] inference-noise keys of `users` for a model's ``sampling_seed`` hyperparameter."""
    return user_keys(key(sampling_seed, "sampling"), users)
