"""TopPop: every user gets the items ranked by training popularity."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffrec_jax.protocol import FitData, Recommender, UserBatch


def toppop() -> Recommender:
    """Most-popular baseline: score(u, i) = number of train users who interacted with i.

    Params: ``{"popularity": [n_items] float32}``.
    """

    def fit(data: FitData, key: jax.Array) -> dict[str, jax.Array]:
        del key  # deterministic
        return {"popularity": jnp.asarray(data.train.item_counts(), jnp.float32)}

    return Recommender("toppop", {}, fit, _score)


def _score(params: dict[str, jax.Array], batch: UserBatch) -> jax.Array:
    """[B, n_items] popularity of every item, the same for every user."""
    return jnp.broadcast_to(params["popularity"], batch.rows.shape)
