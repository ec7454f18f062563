"""Layer 4: the one training loop of every gradient-trained model.

- :class:`TrainConfig`: batch size, epochs, validation, early stopping, checkpoints.
- :func:`train`: ``train(trainable, data, config, key=...) -> TrainResult``.
- :class:`TrainPlan` / :func:`run_plan` / :func:`fit_plan`: a model's Trainable, config,
  examples and validation for one dataset, trained with overrides of the config;
  :func:`training_record` is the JSON record results files keep.
"""

from __future__ import annotations

from diffrec_jax.train.config import TrainConfig
from diffrec_jax.train.loop import (
    BatchSource,
    DenseRows,
    EarlyStopping,
    EpochRecord,
    EvaluatorLike,
    TrainingDiverged,
    TrainResult,
    TrainState,
    early_stopping_update,
    epoch_batches,
    should_stop,
    steps_per_epoch,
    train,
    validation_evaluator,
)
from diffrec_jax.train.plan import (
    ROW_TRAIN_HPARAMS,
    SEQ_TRAIN_HPARAMS,
    TrainPlan,
    fit_plan,
    row_train_config,
    run_plan,
    seq_plan,
    seq_train_config,
    training_record,
)

__all__ = [
    "ROW_TRAIN_HPARAMS",
    "SEQ_TRAIN_HPARAMS",
    "BatchSource",
    "DenseRows",
    "EarlyStopping",
    "EpochRecord",
    "EvaluatorLike",
    "TrainConfig",
    "TrainPlan",
    "TrainResult",
    "TrainState",
    "TrainingDiverged",
    "early_stopping_update",
    "epoch_batches",
    "fit_plan",
    "row_train_config",
    "run_plan",
    "seq_plan",
    "seq_train_config",
    "should_stop",
    "steps_per_epoch",
    "train",
    "training_record",
    "validation_evaluator",
]
