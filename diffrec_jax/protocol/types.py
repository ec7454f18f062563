"""The one protocol every model in the zoo follows.

A model is a :class:`Recommender`: a named tuple of two functions.

- ``fit(data, key) -> params``: learns from :class:`FitData` (train, and valid for early
  stopping; never test). Closed-form models compute their parameters directly; gradient-trained
  models run the shared training loop. Runs on the host and may use numpy/scipy.
- ``score(params, batch) -> [B, n_items]``: a pure function of the parameters and a
  :class:`UserBatch`, compiled by the evaluator with ``jax.jit``. Higher is better; the
  evaluator removes excluded items, so a model need not mask anything itself.

Models are built by factories taking hyperparameters as keyword arguments (``ease(lam=500.)``)
and registered in :mod:`diffrec_jax.models` with their defaults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.data.split import Split

Params = Any  # a pytree of arrays


class UserBatch(NamedTuple):
    """Model input for a batch of users.

    Attributes:
      users: [B] int32 user indices.
      rows: [B, n_items] float32 dense input rows (the users' train interactions).
      weights: [B] float32 row weights, or None (every row counts once). The training loop
        always sets it: 1 for real rows, 0 for the rows that pad the last batch of an epoch
        to the compiled batch size. A loss averages over rows with :func:`mean_over_rows` and
        ignores zero-weight rows in any model-state update; `score` ignores it.
    """

    users: jax.Array
    rows: jax.Array
    weights: jax.Array | None = None


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
    """

    train: InteractionMatrix
    valid: InteractionMatrix | None = None


class Recommender(NamedTuple):
    """A recommender as pure functions.

    Attributes:
      name: registry name, e.g. "ease".
      hparams: the hyperparameters it was built with.
      fit: ``fit(data: FitData, key: jax.Array) -> params``.
      score: ``score(params, batch: UserBatch) -> [B, n_items] float32``; pure and jit-able.
      trainable: for gradient-trained models, the :class:`Trainable` that `fit` trains (so that
        callers wanting the full training record can call ``diffrec_jax.train.train``); None
        for closed-form models.
      train_config: the ``diffrec_jax.train.TrainConfig`` that `fit` uses, or None.
      prepare: ``prepare(split) -> split``, a data transform the model is defined with, or None.
        Whoever fits and evaluates the model applies it first and uses the result for both
        (fit data and evaluator input rows), e.g. T-DiffRec's time-weighted train values. It
        must keep the shape and the stored-entry pattern of every matrix (the evaluator's
        masks and truth come from the patterns).
      input: what `fit` and `score` take: "rows" (:class:`FitData` and :class:`UserBatch`, the
        user-vector models) or "sequences" (``SeqFitData`` and ``SeqBatch`` of
        :mod:`diffrec_jax.models.seqbase`, the sequential models; their hparams hold
        ``max_len``).
      train_inputs: ``train_inputs(fit_data) -> dict`` of extra keyword arguments of
        ``diffrec_jax.train.train`` (``source=``, ``evaluator=``) with which `fit` trains, so
        that a caller wanting the full training record trains exactly as `fit` does; None
        for the defaults.
      fit_with_record: ``fit_with_record(data, key) -> (params, record)`` for a model whose
        `fit` is several runs of the training loop (ADRec's stages), so has no single
        `trainable`: the same fit as `fit`, also returning the JSON-able training record
        (the keys of ``diffrec_jax.train.training_record`` for the run that gave the params,
        ``epochs`` over all runs, and ``stages``); None otherwise.
    """

    name: str
    hparams: Mapping[str, Any]
    fit: Callable[[FitData, jax.Array], Params]
    score: Callable[[Params, UserBatch], jax.Array]
    trainable: Trainable | None = None
    train_config: Any = None
    prepare: Callable[[Split], Split] | None = None
    input: str = "rows"
    train_inputs: Callable[[Any], dict[str, Any]] | None = None
    fit_with_record: Callable[[Any, jax.Array], tuple[Params, dict[str, Any]]] | None = None


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registry entry: how to build a model and its default hyperparameters.

    Attributes:
      name: registry name.
      make: factory ``make(**hparams) -> Recommender``.
      defaults: default value of every hyperparameter (also their types for flag parsing).
      description: one line for listings.
    """

    name: str
    make: Callable[..., Recommender]
    defaults: Mapping[str, Any]
    description: str = ""

    def build(self, **overrides: Any) -> Recommender:
        """Builds the model with defaults updated by `overrides` (unknown names raise)."""
        from diffrec_jax.errors import ConfigError

        unknown = sorted(set(overrides) - set(self.defaults))
        if unknown:
            raise ConfigError(
                f"model {self.name!r} has no hyperparameter(s) {unknown}; "
                f"expected some of {sorted(self.defaults)}"
            )
        return self.make(**{**self.defaults, **overrides})


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
    """

    init: Callable[[jax.Array, int], tuple[Params, Any]]
    loss: Callable[..., tuple[jax.Array, tuple[Any, Mapping[str, jax.Array]]]]
    score: Callable[[Params, UserBatch], jax.Array]
    optimizer: Callable[[], Any]
