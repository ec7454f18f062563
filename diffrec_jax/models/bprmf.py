r"""BPR-MF: matrix factorisation trained with Bayesian personalised ranking (Rendle et al. 2009).

Scores are :math:`\hat x_{ui} = \langle p_u, q_i \rangle` with user and item embeddings
(no biases). Training samples triples (u, i, j) with i one of u's train items and j an item u
did not interact with, and minimises, per triple,

.. math::
   \mathrm{softplus}(\hat x_{uj} - \hat x_{ui})
   + \lambda \cdot \tfrac12 (\|p_u\|^2 + \|q_i\|^2 + \|q_j\|^2),

(:math:`-\ln \sigma(\hat x_{ui} - \hat x_{uj})` plus L2 on the embeddings the triple uses, as
the LightGCN authors' ``PureMF``/``LightGCN.bpr_loss``: reg / 2 times the squared norms divided
by the number of triples), averaged over the triples of the batch's real rows.

Sampling happens inside the loss from the step key, on the batch's dense rows
(:func:`sample_triples`): every user of the batch gets `samples_per_user` triples, positive
uniform over the user's train items, negative uniform over the others (with replacement, by
inverse-CDF sampling on the row's pattern). Users visit the sampler uniformly, as the LightGCN
code's ``UniformSample_original`` (which draws users uniformly, one triple each, train-size
triples per epoch); an epoch here gives every user `samples_per_user` triples. Users with no
train item or no non-interacted item have no triple and do not count.

The user embedding table needs the number of users, which `Trainable.init(key, n_items)` does
not see: :func:`bprmf` takes it, and the registry entry's :func:`plan` builds the Trainable from
the train matrix for the shared training loop.

Initialisation N(0, 0.1^2) (the LightGCN code's); optimiser Adam (the original used SGD with
bootstrap sampling).

References:
  Rendle, Freudenthaler, Gantner, Schmidt-Thieme, "BPR: Bayesian Personalized Ranking from
  Implicit Feedback", UAI 2009.
  He, Deng, Wang, Li, Zhang, Wang, "LightGCN", SIGIR 2020 (code:
  github.com/gusye1234/LightGCN-PyTorch, the PureMF baseline).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from diffrec_jax.errors import ConfigError
from diffrec_jax.protocol import (
    FitData,
    StepInfo,
    Trainable,
    UserBatch,
    mean_over_rows,
    row_weights,
)
from diffrec_jax.train import TrainPlan, row_train_config

Params = dict[str, jax.Array]

INIT_STD = 0.1
"""Standard deviation of the normal embedding initialisation (the LightGCN code's)."""


class Triples(NamedTuple):
    """Sampled (user, positive, negative) triples of a batch of rows.

    Attributes:
      positives: [B, S] int32 items the row interacted with.
      negatives: [B, S] int32 items the row did not interact with.
      valid: [B] bool; False for rows without a positive or without a negative (their
        indices are then arbitrary valid item indices).
    """

    positives: jax.Array
    negatives: jax.Array
    valid: jax.Array


def _nth_true(pattern: jax.Array, n: jax.Array) -> jax.Array:
    """Index of the n-th (0-based) True of every row: [B, I] bool, [B, S] int -> [B, S] int32."""
    counts = jnp.cumsum(pattern, axis=-1, dtype=jnp.int32)
    index = jax.vmap(lambda c, r: jnp.searchsorted(c, r, side="right"))(counts, n)
    return jnp.minimum(index, pattern.shape[-1] - 1).astype(jnp.int32)


def sample_triples(key: jax.Array, rows: jax.Array, n_samples: int) -> Triples:
    """`n_samples` (positive, negative) pairs per row, each uniform over its candidates.

    Positives are uniform over the row's nonzero entries, negatives uniform over its zeros;
    draws are independent (with replacement). One ``jax.random.randint(key, (2, B, n_samples),
    ...)`` draws the ranks of the positives and negatives among the row's candidates, and a
    binary search in the row's cumulative counts finds them: memory O(B x n_items), not
    O(B x n_samples x n_items) as Gumbel-max sampling would need.

    Args:
      key: typed key.
      rows: [B, n_items] dense rows (nonzero = interacted).
      n_samples: pairs per row (static).

    Returns:
      :class:`Triples`.
    """
    pattern = rows != 0
    n_pos = jnp.sum(pattern, axis=-1, dtype=jnp.int32)
    n_neg = rows.shape[-1] - n_pos
    n_candidates = jnp.maximum(jnp.stack([n_pos, n_neg]), 1)[..., None]  # [2, B, 1]
    ranks = jax.random.randint(key, (2, rows.shape[0], n_samples), 0, n_candidates)
    return Triples(
        positives=_nth_true(pattern, ranks[0]),
        negatives=_nth_true(~pattern, ranks[1]),
        valid=(n_pos > 0) & (n_neg > 0),
    )


def bpr_per_row(users: jax.Array, positives: jax.Array, negatives: jax.Array) -> jax.Array:
    """BPR loss of every row, averaged over its triples.

    Args:
      users: [B, d] user embeddings that score.
      positives, negatives: [B, S, d] item embeddings that score.

    Returns:
      [B]: mean over S of softplus(<u, j> - <u, i>) = -ln sigmoid(<u, i> - <u, j>).
    """
    pos = jnp.einsum("bd,bsd->bs", users, positives)
    neg = jnp.einsum("bd,bsd->bs", users, negatives)
    return jnp.mean(jax.nn.softplus(neg - pos), axis=-1)


def l2_per_row(users: jax.Array, positives: jax.Array, negatives: jax.Array) -> jax.Array:
    """Half the squared norms of every triple's embeddings, averaged over the row's triples.

    Args:
      users: [B, d]; positives, negatives: [B, S, d] (the embeddings that are penalised).

    Returns:
      [B]: mean over S of (|u|^2 + |i|^2 + |j|^2) / 2.
    """
    squares = (
        jnp.sum(users**2, axis=-1)[:, None]
        + jnp.sum(positives**2, axis=-1)
        + jnp.sum(negatives**2, axis=-1)
    )
    return 0.5 * jnp.mean(squares, axis=-1)


def valid_rows(batch: UserBatch, triples: Triples) -> UserBatch:
    """`batch` with zero weight on the rows that have no triple."""
    return batch._replace(weights=row_weights(batch) * triples.valid.astype(jnp.float32))


def embedding_score(params: Params, batch: UserBatch) -> jax.Array:
    """users[batch.users] @ items^T: [B, n_items] float32 (params ``{"users", "items"}``)."""
    return params["users"][batch.users] @ params["items"].T


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def init_embeddings(key: jax.Array, n_users: int, n_items: int, factors: int) -> Params:
    """``{"users": [n_users, factors], "items": [n_items, factors]}`` float32, N(0, INIT_STD^2)."""
    key_u, key_i = jax.random.split(key)
    return {
        "users": INIT_STD * jax.random.normal(key_u, (n_users, factors), jnp.float32),
        "items": INIT_STD * jax.random.normal(key_i, (n_items, factors), jnp.float32),
    }


def check_pairwise_hparams(model: str, *, factors, lr, reg, samples_per_user) -> None:
    """Raises ConfigError naming the first invalid hyperparameter of a BPR-trained model."""
    for name, value in (("factors", factors), ("samples_per_user", samples_per_user)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{model} needs an int {name} >= 1, got {name}={value!r}")
    if not lr > 0:
        raise ConfigError(f"{model} needs lr > 0, got {lr=}")
    if not reg >= 0:
        raise ConfigError(f"{model} needs reg >= 0, got {reg=}")


def bprmf(
    n_users: int,
    *,
    factors: int = 64,
    lr: float = 1e-3,
    reg: float = 1e-4,
    samples_per_user: int = 16,
) -> Trainable:
    """BPR-MF as a :class:`~diffrec_jax.protocol.Trainable` for `n_users` users.

    Args:
      n_users: rows of the train matrix (the user embedding table).
      factors: embedding size.
      lr: Adam learning rate.
      reg: L2 weight on the embeddings of each triple (lambda in the module docstring).
      samples_per_user: triples per user of a batch.

    Returns:
      ``Trainable(init, loss, score, optimizer)``; params ``{"users": [n_users, factors],
      "items": [n_items, factors]}``, model state ``()``. The loss samples with
      :func:`sample_triples` from its key; aux holds "bpr" and "l2" (batch means, the L2 term
      before its weight `reg`).

    Raises:
      ConfigError: an invalid hyperparameter.
    """
    check_pairwise_hparams(
        "BPR-MF", factors=factors, lr=lr, reg=reg, samples_per_user=samples_per_user
    )
    if isinstance(n_users, bool) or not isinstance(n_users, int) or n_users < 1:
        raise ConfigError(f"BPR-MF needs an int n_users >= 1, got {n_users=}")
    reg = float(reg)

    def init(key: jax.Array, n_items: int) -> tuple[Params, tuple]:
        return init_embeddings(key, n_users, n_items, factors), ()

    def loss(params: Params, state: tuple, batch: UserBatch, key: jax.Array, info: StepInfo):
        del info
        triples = sample_triples(key, batch.rows, samples_per_user)
        users = params["users"][batch.users]
        pos = params["items"][triples.positives]
        neg = params["items"][triples.negatives]
        batch = valid_rows(batch, triples)
        bpr = bpr_per_row(users, pos, neg)
        l2 = l2_per_row(users, pos, neg)
        aux = {
            "bpr": mean_over_rows(jax.lax.stop_gradient(bpr), batch),
            "l2": mean_over_rows(jax.lax.stop_gradient(l2), batch),
        }
        return mean_over_rows(bpr + reg * l2, batch), (state, aux)

    def optimizer() -> optax.GradientTransformation:
        return optax.adam(lr)

    return Trainable(init, loss, embedding_score, optimizer)


DEFAULTS: dict[str, Any] = {
    name: p.default
    for name, p in inspect.signature(bprmf).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
}
"""Every hyperparameter of :func:`bprmf` (n_users comes from the data) and its default."""

TRAIN_DEFAULTS: dict[str, Any] = {
    # 128 users x 16 samples = 2048 triples per step, the LightGCN code's bpr_batch_size.
    "batch_size": 128,
    "max_epochs": 1000,
    "eval_every": 10,
    "patience": 5,
}
"""BPR-MF's training hyperparameters, as recommender hparams."""

RECOMMENDER_DEFAULTS: dict[str, Any] = {**DEFAULTS, **TRAIN_DEFAULTS}
"""Every hyperparameter of the ``"bprmf"`` registry entry and its default."""


def check_hparams(values: Mapping[str, Any]) -> None:
    """Validates BPR-MF's hyperparameters (raises ConfigError) without data."""
    bprmf(1, **{k: values[k] for k in DEFAULTS})


def plan(values: Mapping[str, Any], data: FitData) -> TrainPlan:
    """The training plan of ``"bprmf"``: :func:`bprmf` sized by ``data.train``'s users, the
    shared loop's configuration from :data:`TRAIN_DEFAULTS`' hyperparameters."""
    trainable = bprmf(int(data.train.n_users), **{k: values[k] for k in DEFAULTS})
    return TrainPlan(trainable, row_train_config(values))
