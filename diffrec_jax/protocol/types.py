"""The types every layer shares: the one protocol every model in the zoo follows.

A model is a :class:`Recommender`: a name, its hyperparameters and two functions.

- ``fit(data, key) -> params``: learns from :class:`FitData` (train, and valid for early
  stopping; never test). Closed-form models compute their parameters directly; gradient-trained
  models run the shared training loop. Runs on the host and may use numpy/scipy.
- ``score(params, batch) -> [B, n_items]``: a pure function of the parameters and a
  :class:`UserBatch`, compiled by the evaluator with ``jax.jit``. Higher is better; the
  evaluator removes excluded items, so a model need not mask anything itself.

Models are built by factories taking hyperparameters as keyword arguments (``ease(lam=500.)``)
and registered in :mod:`diffrec_jax.models`, whose registry entry (``ModelSpec``) declares
everything else a caller needs: kind, input, side data, defaults, search space and how to build
the :class:`Trainable` from the data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Generic, NamedTuple

import jax
import jax.numpy as jnp
from typing_extensions import TypeVar  # a default for the type variable (typing's from 3.13)

from diffrec_jax.data.interactions import InteractionMatrix

Params = Any  # a pytree of arrays

ArrayT = TypeVar("ArrayT", default=jax.Array)
"""The array type of the fields of a batch (:class:`UserBatch`,
:class:`~diffrec_jax.protocol.SeqBatch`). ``jax.Array`` by default: what a model's loss and
score see (on device, or traced under jit). A batch a training source builds on the host is
``UserBatch[np.ndarray]`` until the training loop places it on the devices; a shape-only batch
(cost analysis) is ``UserBatch[jax.ShapeDtypeStruct]``. Shapes and dtypes are those documented
on each field, whatever the array type."""


class UserBatch(NamedTuple, Generic[ArrayT]):
    """Model input for a batch of users (arrays of type :data:`ArrayT`, ``jax.Array`` unless
    parametrised).

    Attributes:
      users: [B] int32 user indices.
      rows: [B, n_items] float32 dense input rows (the users' train interactions).
      weights: [B] float32 row weights, or None (every row counts once). The training loop
        always sets it: 1 for real rows, 0 for the rows that pad the last batch of an epoch
        to the compiled batch size. A loss averages over rows with :func:`mean_over_rows` and
        ignores zero-weight rows in any model-state update; `score` ignores it.
    """

    users: ArrayT
    rows: ArrayT
    weights: ArrayT | None = None


def row_weights(batch: UserBatch) -> jax.Array:
    """[B] float32 weight of every row of `batch` (ones when `batch.weights` is None)."""
    if batch.weights is None:
        return jnp.ones(batch.rows.shape[0], jnp.float32)
    return batch.weights


def mean_over_rows(values: jax.Array, batch: UserBatch) -> jax.Array:
    """Weighted mean of per-row `values` ([B]) over the real rows of `batch`: a scalar.

    Equals ``values.mean()`` over the unpadded rows, so a padded last batch gives the same loss
    (and gradient) as the short batch it pads.
    """
    w = row_weights(batch)
    return jnp.sum(w * values) / jnp.maximum(jnp.sum(w), 1.0)


class FitData(NamedTuple):
    """What a model may learn from: train, and valid for early stopping. Never test.

    Attributes:
      train: the training interactions.
      valid: validation interactions (for early stopping / model selection), or None.
      side: side data the model's registry entry asks for, by name (e.g. L-DiffRec's
        ``"item_emb"``: [n_items, d] item embeddings); data, never hyperparameters.
    """

    train: InteractionMatrix
    valid: InteractionMatrix | None = None
    side: Mapping[str, Any] = MappingProxyType({})


class Recommender(NamedTuple):
    """A recommender: its name, its hyperparameters and two pure functions.

    Attributes:
      name: registry name, e.g. "ease".
      hparams: the hyperparameters it was built with (every one, defaults included).
      fit: ``fit(data, key) -> params``; `data` is :class:`FitData` (row models) or
        :class:`~diffrec_jax.protocol.SeqFitData` (sequential models), `key` a typed key
        (``diffrec_jax.seeds.key(seed, "fit")``).
      score: ``score(params, batch) -> [B, n_items] float32``; pure and jit-able; `batch` is a
        :class:`UserBatch` or a :class:`~diffrec_jax.protocol.SeqBatch`.

    Everything else (kind, input, side data, data transform, how to build the Trainable) is
    declared once in the model's registry entry, ``diffrec_jax.models.ModelSpec``.
    """

    name: str
    hparams: Mapping[str, Any]
    fit: Callable[[Any, jax.Array], Params]
    score: Callable[[Params, Any], jax.Array]


class StepInfo(NamedTuple):
    """Where training is, for losses that anneal (KL weight, loss mixing).

    Attributes:
      step: [] int32 global optimisation step (0-based).
      epoch: [] int32 epoch (0-based).
    """

    step: jax.Array
    epoch: jax.Array


class Trainable(NamedTuple):
    """A gradient-trained model as pure functions, consumed by the shared training loop.

    Attributes:
      init: ``init(key, n_items) -> (params, model_state)``; model_state is a pytree of arrays
        the loss updates explicitly (e.g. DiffRec's per-timestep loss history), or ``()``.
      loss: ``loss(params, model_state, batch, key, info) -> (scalar, (new_model_state, aux))``
        with `batch` a :class:`UserBatch`, `key` a typed key for this step and `info` a
        :class:`StepInfo`; `aux` is a dict of scalar diagnostics. Pure and jit-able; the
        training loop differentiates it with respect to params only. Average over rows with
        :func:`mean_over_rows` (the last batch of an epoch is padded with zero-weight rows) and
        draw randomness for the whole batch from `key` with global shapes (e.g.
        ``jax.random.normal(key, batch.rows.shape)``), so results do not depend on the number
        of devices the batch is sharded over.
      score: ``score(params, batch) -> [B, n_items]``, as in :class:`Recommender`.
      optimizer: ``optimizer() -> optax.GradientTransformation`` (models with several
        learning rates return an ``optax.multi_transform``).
      export: ``export(params) -> scoring params``, run once after training and before every
        validation (e.g. LightGCN's propagation over the graph), so that `score` takes
        ``export(params)``; None: `score` takes the trained params as they are.
    """

    init: Callable[[jax.Array, int], tuple[Params, Any]]
    loss: Callable[..., tuple[jax.Array, tuple[Any, Mapping[str, jax.Array]]]]
    score: Callable[[Params, Any], jax.Array]
    optimizer: Callable[[], Any]
    export: Callable[[Params], Params] | None = None


def exported(trainable: Trainable, params: Params) -> Params:
    """The scoring parameters of `trainable` for trained `params` (``trainable.export``)."""
    return params if trainable.export is None else trainable.export(params)
