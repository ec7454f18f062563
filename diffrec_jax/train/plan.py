"""Turning a :class:`Trainable` into a :class:`Recommender`.

A gradient-trained model module exposes a factory that builds its pure functions and wraps them
with :func:`trained_recommender`; the experiment code then calls ``fit(data, key)`` and
``score(params, batch)`` exactly as for a closed-form model::

    def multvae(*, lr=1e-3, batch_size=500, epochs=200, ...) -> Recommender:
        trainable = Trainable(init=..., loss=..., score=..., optimizer=...)
        config = TrainConfig(batch_size=batch_size, max_epochs=epochs)
        return trained_recommender("multvae", hparams, trainable, config)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax

from diffrec_jax.errors import ConfigError
from diffrec_jax.models.base import FitData, Params, Recommender, Trainable
from diffrec_jax.models.seqbase import SeqFitData, training_examples
from diffrec_jax.train.config import TrainConfig
from diffrec_jax.train.loop import train


def make_fit(
    trainable: Trainable, config: TrainConfig, **train_kwargs: Any
) -> Callable[[FitData, jax.Array], Params]:
    """``fit(data, key) -> params``: runs :func:`train` and returns the best parameters.

    `key` seeds everything (``config.seed`` is then unused); `train_kwargs` are passed on to
    :func:`train` (``evaluator=``, ``on_epoch=``, ``devices=``).
    """

    def fit(data: FitData, key: jax.Array) -> Params:
        return train(trainable, data, config, key=key, **train_kwargs).params

    return fit


def trained_recommender(
    name: str,
    hparams: Mapping[str, Any],
    trainable: Trainable,
    config: TrainConfig,
    **train_kwargs: Any,
) -> Recommender:
    """A :class:`Recommender` whose `fit` runs the shared training loop on `trainable`."""
    return Recommender(
        name=name,
        hparams=dict(hparams),
        fit=make_fit(trainable, config, **train_kwargs),
        score=trainable.score,
        trainable=trainable,
        train_config=config,
    )


def make_seq_fit(
    trainable: Trainable,
    config: TrainConfig,
    *,
    max_len: int,
    examples: str = "sequence",
    **train_kwargs: Any,
) -> Callable[[SeqFitData, jax.Array], Params]:
    """``fit(data: SeqFitData, key) -> params`` for a sequential model.

    Builds the training examples (:func:`~diffrec_jax.models.seqbase.training_examples` of kind
    `examples`, histories of `max_len`), validates with a
    :class:`~diffrec_jax.sequence_evaluation.SequenceEvaluator` on the valid targets (the
    metrics of ``config.ks``, default selection metric as in `config`), and returns the best
    parameters of :func:`train`.
    """
    inputs = seq_train_inputs(config, max_len=max_len, examples=examples)

    def fit(data: SeqFitData, key: jax.Array) -> Params:
        kwargs = {**inputs(data), **train_kwargs}
        return train(trainable, data, config, key=key, **kwargs).params

    return fit


def seq_train_inputs(
    config: TrainConfig, *, max_len: int, examples: str = "sequence"
) -> Callable[[SeqFitData], dict[str, Any]]:
    """``inputs(data) -> {"source": SeqExamples, "evaluator": SequenceEvaluator | None}``: the
    keyword arguments of :func:`train` for a sequential model (see :func:`make_seq_fit`)."""
    from diffrec_jax.sequence_evaluation import SequenceEvaluator

    def inputs(data: SeqFitData) -> dict[str, Any]:
        evaluator = None
        if data.valid_targets is not None:
            evaluator = SequenceEvaluator.from_fit_data(
                data,
                max_len,
                ks=config.ks,
                convention=config.convention,
                batch_size=config.eval_batch_size,
            )
        return {
            "source": training_examples(data.train, max_len, examples),
            "evaluator": evaluator,
        }

    return inputs


def seq_trained_recommender(
    name: str,
    hparams: Mapping[str, Any],
    trainable: Trainable,
    config: TrainConfig,
    *,
    examples: str = "sequence",
    **train_kwargs: Any,
) -> Recommender:
    """A sequential :class:`Recommender` (``input="sequences"``) trained by the shared loop.

    `hparams` must hold ``max_len``; `examples` is "sequence" (one example per user, targets
    at every position) or "prefix" (one example per prefix), see
    :mod:`diffrec_jax.models.seqbase`.
    """
    if "max_len" not in hparams:
        raise ConfigError(f"sequential model {name!r}: hparams must hold max_len")
    max_len = int(hparams["max_len"])
    return Recommender(
        name=name,
        hparams=dict(hparams),
        fit=make_seq_fit(trainable, config, max_len=max_len, examples=examples, **train_kwargs),
        score=trainable.score,
        trainable=trainable,
        train_config=config,
        input="sequences",
        train_inputs=seq_train_inputs(config, max_len=max_len, examples=examples),
    )


def seq_train_config(values: Mapping[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` of a sequential model from its hyperparameters.

    Reads batch_size, max_epochs, eval_every, patience (0 or None: never stop early) and
    select_metric; the validation evaluator computes HR/NDCG (and Recall, MRR) at 5, 10, 20.
    """
    from diffrec_jax.sequence_evaluation import SEQ_KS

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
