"""How one model trains on one dataset, and the training record results files keep.

A gradient-trained model's registry entry builds a :class:`TrainPlan` from its hyperparameters
and the data: the :class:`~diffrec_jax.protocol.Trainable`, the loop's :class:`TrainConfig`, the
training examples and the validation evaluator. :func:`run_plan` runs it through :func:`train`;
every caller (``Recommender.fit``, the experiment, tuning and audit) trains through it, so a
configuration override (the study's selection metric, a refit's epoch count) reaches the one
config the loop uses::

    plan = TrainPlan(trainable, TrainConfig(batch_size=400, max_epochs=200))
    result = run_plan(plan, FitData(train, valid), key, overrides={"select_metric": "NDCG@20"})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from diffrec_jax.data import guards
from diffrec_jax.errors import ConfigError
from diffrec_jax.evaluation import SEQ_KS, SequenceEvaluator
from diffrec_jax.protocol import (
    Params,
    SeqFitData,
    Trainable,
    exported,
    training_examples,
)
from diffrec_jax.train.config import TrainConfig
from diffrec_jax.train.loop import BatchSource, EvaluatorLike, TrainResult, train

ROW_TRAIN_HPARAMS = ("batch_size", "max_epochs", "eval_every", "patience")
"""The training hyperparameters of a row model (fields of :class:`TrainConfig`)."""

SEQ_TRAIN_HPARAMS = (*ROW_TRAIN_HPARAMS, "select_metric")
"""The training hyperparameters of a sequential model (it also names its selection metric)."""


class TrainPlan(NamedTuple):
    """Everything :func:`train` needs for one model on one dataset.

    Attributes:
      trainable: the model's pure functions.
      config: the loop's configuration.
      source: the training examples; None: the users of ``data.train`` as dense rows.
      evaluator: ``evaluator(config) -> evaluator or None`` of the validation data; None: the
        loop's default (:func:`~diffrec_jax.train.loop.validation_evaluator` when
        ``data.valid`` is given).
    """

    trainable: Trainable
    config: TrainConfig
    source: BatchSource | None = None
    evaluator: Callable[[TrainConfig], EvaluatorLike | None] | None = None


def run_plan(
    plan: TrainPlan,
    data: Any,
    key: jax.Array,
    *,
    overrides: Mapping[str, Any] | None = None,
    **train_kwargs: Any,
) -> TrainResult:
    """Trains `plan` on `data` with `key`; `overrides` replace fields of ``plan.config``.

    Returns the loop's :class:`TrainResult` (``params`` are the trained ones; score with
    ``exported(plan.trainable, result.params)``). `train_kwargs` go to :func:`train`
    (``on_epoch=``, ``devices=``).

    Raises:
      ConfigError: a batch too large for the available memory (:func:`check_batch_memory`).
    """
    config = plan.config.replace(**overrides) if overrides else plan.config
    check_batch_memory(config.batch_size, plan.source, data)
    check_params_memory(plan.trainable, plan.source, data)
    evaluator = None if plan.evaluator is None else plan.evaluator(config)
    return train(
        plan.trainable,
        data,
        config,
        key=key,
        evaluator=evaluator,
        source=plan.source,
        **train_kwargs,
    )


def check_batch_memory(batch_size: int, source: BatchSource | None, data: Any) -> None:
    """Refuses a `batch_size` whose batch of dense float32 [batch_size, n_items] rows would not
    fit in the available memory (the loop pads every batch to `batch_size` rows, however few
    training examples there are), before anything is allocated.

    Raises:
      ConfigError: naming batch_size, the size it implies and the number of examples.
    """
    if source is not None:
        n_examples, n_items = source.n_examples, source.n_items
    else:
        train_matrix = getattr(data, "train", None)
        shape = getattr(train_matrix, "shape", None)
        if shape is None:
            return
        n_examples, n_items = shape
    nbytes = float(batch_size) * n_items * np.dtype(np.float32).itemsize
    too_big, avail = guards.exceeds_memory(nbytes)
    if too_big:
        raise ConfigError(
            f"batch_size={batch_size:,} needs {guards.format_bytes(nbytes)} for one batch of "
            f"dense [batch_size, n_items={n_items:,}] float32 rows (every batch is padded to "
            f"batch_size rows), more than the {avail}; expected batch_size at most the "
            f"{n_examples:,} training examples"
        )


PARAMS_COPIES = 5
"""Copies of the parameters the loop holds at once: the parameters, the best ones, the
gradients and Adam's two moments."""


def check_params_memory(trainable: Trainable, source: BatchSource | None, data: Any) -> None:
    """Refuses a model whose parameters (times :data:`PARAMS_COPIES`) would not fit in the
    available memory, before anything is allocated (their shapes come from ``jax.eval_shape``
    of ``trainable.init``: nothing is computed).

    Raises:
      ConfigError: naming the size of the parameters and the largest array.
    """
    if source is not None:
        n_items = source.n_items
    else:
        shape = getattr(getattr(data, "train", None), "shape", None)
        if shape is None:
            return
        n_items = shape[1]
    shapes = jax.eval_shape(lambda key: trainable.init(key, int(n_items))[0], jax.random.key(0))
    leaves = [(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize, x.shape)
              for x in jax.tree.leaves(shapes)]  # fmt: skip
    if not leaves:
        return
    nbytes = float(sum(n for n, _ in leaves)) * PARAMS_COPIES
    too_big, avail = guards.exceeds_memory(nbytes)
    if too_big:
        largest = max(leaves, key=lambda leaf: leaf[0])[1]
        raise ConfigError(
            f"the model's parameters take {guards.format_bytes(nbytes / PARAMS_COPIES)} (largest "
            f"array {tuple(largest)}), {guards.format_bytes(nbytes)} with the gradients, the "
            f"best copy and the optimiser's state: more than the {avail}; expected smaller "
            "layer sizes (e.g. dims, factors, d)"
        )


def training_record(result: TrainResult) -> dict[str, Any]:
    """The JSON-able record of one training run, as results files store it.

    Returns:
      ``{"best_epoch", "epochs", "stopped_early", "best_valid", "seconds_per_epoch",
      "history": [{"epoch", "loss", "seconds", "valid"}, ...]}``; ``seconds_per_epoch`` is
      the mean over `result.history` (None when no epoch was trained).
    """
    return {
        "best_epoch": result.best_epoch,
        "epochs": len(result.history),
        "stopped_early": result.stopped_early,
        "best_valid": result.best_metrics,
        "seconds_per_epoch": float(np.mean([r.seconds for r in result.history]))
        if result.history
        else None,
        "history": [
            {"epoch": r.epoch, "loss": r.loss, "seconds": r.seconds, "valid": r.metrics}
            for r in result.history
        ],
    }


def fit_plan(
    plan: TrainPlan, data: Any, key: jax.Array, overrides: Mapping[str, Any] | None = None
) -> tuple[Params, dict[str, Any]]:
    """(scoring params, training record) of :func:`run_plan`: the fit of a trained model."""
    result = run_plan(plan, data, key, overrides=overrides)
    return exported(plan.trainable, result.params), training_record(result)


def row_train_config(values: Mapping[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` of a row model from its hyperparameters
    (:data:`ROW_TRAIN_HPARAMS`; validation Recall@20 by default)."""
    return TrainConfig(**{k: values[k] for k in ROW_TRAIN_HPARAMS})


def seq_train_config(values: Mapping[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` of a sequential model from its hyperparameters.

    Reads :data:`SEQ_TRAIN_HPARAMS` (patience 0 or None: never stop early); the validation
    evaluator computes HR/NDCG (and Recall, MRR) at 5, 10, 20.

    Raises:
      ConfigError: a selection metric the sequence evaluator does not compute.
    """
    metric = values["select_metric"]
    names = {f"{m}@{k}" for m in ("HitRate", "NDCG", "Recall", "MRR") for k in SEQ_KS}
    if metric not in names:
        raise ConfigError(f"select_metric={metric!r}; expected one of {sorted(names)}")
    return TrainConfig(
        batch_size=values["batch_size"],
        max_epochs=values["max_epochs"],
        eval_every=values["eval_every"],
        patience=values["patience"] or None,
        select_metric=metric,
        ks=SEQ_KS,
    )


def seq_plan(
    trainable: Trainable,
    config: TrainConfig,
    data: SeqFitData,
    *,
    max_len: int,
    examples: str = "sequence",
) -> TrainPlan:
    """The plan of a sequential model: its training examples (of kind `examples`, histories
    of `max_len`, see :mod:`diffrec_jax.protocol.sequences`) and a
    :class:`~diffrec_jax.evaluation.SequenceEvaluator` on the valid targets (when given)."""

    def evaluator(config: TrainConfig) -> SequenceEvaluator | None:
        if data.valid_targets is None:
            return None
        return SequenceEvaluator.from_fit_data(
            data,
            max_len,
            ks=config.ks,
            convention=config.convention,
            batch_size=config.eval_batch_size,
        )

    return TrainPlan(trainable, config, training_examples(data.train, max_len, examples), evaluator)
