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

from diffrec_jax.models.base import FitData, Params, Recommender, Trainable
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
