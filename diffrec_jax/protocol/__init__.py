"""Layer 1: the types every layer shares (data in, scores out, the model protocol).

- Row models: :class:`FitData` (train, valid, side data) and :class:`UserBatch`.
- Sequential models: :class:`SeqFitData` and :class:`SeqBatch` (left-padded histories), and the
  training examples built from sequences (:func:`training_examples`).
- Every model: :class:`Recommender` (name, hparams, ``fit``, ``score``); gradient-trained models
  also a :class:`Trainable` (init / loss / score / optimizer [/ export]) for the training loop.
"""

from __future__ import annotations

from diffrec_jax.protocol.sequences import (
    EXAMPLE_KINDS,
    SeqBatch,
    SeqExamples,
    SeqFitData,
    left_pad,
    training_examples,
)
from diffrec_jax.protocol.types import (
    FitData,
    Params,
    Recommender,
    StepInfo,
    Trainable,
    UserBatch,
    exported,
    mean_over_rows,
    row_weights,
)

__all__ = [
    "EXAMPLE_KINDS",
    "FitData",
    "Params",
    "Recommender",
    "SeqBatch",
    "SeqExamples",
    "SeqFitData",
    "StepInfo",
    "Trainable",
    "UserBatch",
    "exported",
    "left_pad",
    "mean_over_rows",
    "row_weights",
    "training_examples",
]
