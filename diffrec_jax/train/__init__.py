"""The shared training loop of every gradient-trained model.

- :class:`TrainConfig`: batch size, epochs, validation, early stopping, checkpoints.
- :func:`train`: ``train(trainable, FitData, config, key=...) -> TrainResult``.
- :func:`trained_recommender` / :func:`make_fit`: plug a :class:`Trainable` into the
  :class:`Recommender` protocol (``fit(data, key) -> best params``).
"""

from __future__ import annotations

from diffrec_jax.train.config import TrainConfig
from diffrec_jax.train.fit import (
    make_fit,
    make_seq_fit,
    seq_train_config,
    seq_trained_recommender,
    trained_recommender,
)
from diffrec_jax.train.loop import (
    BatchSource,
    DenseRows,
    EarlyStopping,
    EpochRecord,
    TrainingDiverged,
    TrainResult,
    TrainState,
    early_stopping_update,
    epoch_batches,
    should_stop,
    steps_per_epoch,
    train,
    training_record,
    validation_evaluator,
)

__all__ = [
    "BatchSource",
    "DenseRows",
    "make_seq_fit",
    "seq_train_config",
    "seq_trained_recommender",
    "EarlyStopping",
    "EpochRecord",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "TrainingDiverged",
    "early_stopping_update",
    "epoch_batches",
    "make_fit",
    "should_stop",
    "steps_per_epoch",
    "train",
    "trained_recommender",
    "training_record",
    "validation_evaluator",
]
