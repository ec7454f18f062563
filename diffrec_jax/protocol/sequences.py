"""The sequential side of the model protocol: histories in, scores over all items out.

Sequential recommenders (SASRec, GRU4Rec, DiffuRec, DreamRec, ADRec) are
:class:`~diffrec_jax.protocol.Recommender` named tuples like every other model; only their data
types differ:

- ``fit(data: SeqFitData, key) -> params``: sees the training sequences (``seq[:-2]``) and the
  validation targets, never the test targets.
- ``score(params, batch: SeqBatch) -> [B, n_items]``: scores the item following each history.

A history is ``[B, L]`` int32, oldest first, **left-padded** with ``pad = n_items`` (one past the
last item), so an ``[n_items + 1, d]`` embedding table's last row is the padding embedding and
the mask is ``history != n_items``. Training examples come in two forms (a model picks one by
its registry entry):

- ``"sequence"``: one example per user: ``history = train_seq[:-1][-L:]`` and ``targets`` the
  history shifted left by one (``train_seq[1:][-L:]``): the next item at every position, pad
  where there is no history. Causal models (SASRec, GRU4Rec, ADRec) train on every position.
- ``"prefix"``: one example per prefix of every training sequence: history ``train_seq[:i][-L:]``
  and target ``train_seq[i]`` for every ``i >= 1`` (DiffuRec, DreamRec: non-causal models see
  each prefix as a separate sample). ``targets`` then has shape ``[B, 1]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Generic, NamedTuple

import numpy as np

from diffrec_jax.data.sequences import SequenceDataset, SequenceSplit, left_padded
from diffrec_jax.errors import ConfigError
from diffrec_jax.protocol.types import ArrayT

EXAMPLE_KINDS = ("sequence", "prefix")


class SeqBatch(NamedTuple, Generic[ArrayT]):
    """Model input for a batch of histories (arrays of type
    :data:`~diffrec_jax.protocol.types.ArrayT`, ``jax.Array`` unless parametrised).

    Attributes:
      users: [B] int32 user indices (of the example's user).
      history: [B, L] int32 item indices, oldest first, left-padded with ``n_items``.
      targets: [B, L] int32 next item at every position ("sequence" examples) or [B, 1] the
        item following the history ("prefix" examples), ``n_items`` where there is none; None
        when scoring.
      weights: [B] float32, 1 for real examples and 0 for the padding of the last batch of an
        epoch (as :class:`~diffrec_jax.protocol.UserBatch.weights`); None when scoring.
    """

    users: ArrayT
    history: ArrayT
    targets: ArrayT | None = None
    weights: ArrayT | None = None


class SeqFitData(NamedTuple):
    """What a sequential model may learn from: the train sequences and the valid targets.

    Attributes:
      train: the training sequences (``seq[:-2]`` of every user).
      valid_targets: [n_users] int64 second-to-last item of every user (for early stopping),
        or None.
      side: side data by name, as :class:`~diffrec_jax.protocol.FitData.side`.
    """

    train: SequenceDataset
    valid_targets: np.ndarray | None = None
    side: Mapping[str, Any] = MappingProxyType({})

    @property
    def n_items(self) -> int:
        return self.train.n_items

    @classmethod
    def from_split(cls, split: SequenceSplit) -> SeqFitData:
        """The train sequences and valid targets of `split` (its test targets stay out)."""
        return cls(split.train, split.valid_targets)


def left_pad(data: SequenceDataset, max_len: int, *, drop_last: int = 0) -> np.ndarray:
    """[n_users, max_len] int32 histories, oldest first, padded with ``data.n_items``
    (:func:`diffrec_jax.data.sequences.left_padded`)."""
    return left_padded(data, max_len, drop_last=drop_last)


class SeqExamples(NamedTuple):
    """All training examples of one epoch, as arrays indexed by example.

    Attributes:
      users: [N] int32 user of every example.
      history: [N, L] int32 left-padded histories.
      targets: [N, L] or [N, 1] int32 targets (see :class:`SeqBatch`).
      n_items: size of the item index space (the padding value).

    It is a ``diffrec_jax.train.BatchSource``: pass it to ``train(..., source=examples)``.
    """

    users: np.ndarray
    history: np.ndarray
    targets: np.ndarray
    n_items: int

    @property
    def n_examples(self) -> int:
        return len(self.users)

    def batch(self, indices: np.ndarray, weights: np.ndarray) -> SeqBatch[np.ndarray]:
        """The :class:`SeqBatch` of examples `indices` ([B]) with row `weights` ([B]), host
        arrays (the training loop places them on the devices)."""
        return SeqBatch(self.users[indices], self.history[indices], self.targets[indices], weights)


def training_examples(data: SequenceDataset, max_len: int, kind: str = "sequence") -> SeqExamples:
    """The training examples of `data` (see the module docstring for the two kinds).

    Users whose training sequence has fewer than 2 items give no "sequence" example and no
    "prefix" example (there is no (history, target) pair in them).

    Args:
      data: the training sequences (``SeqFitData.train``).
      max_len: history length L.
      kind: "sequence" or "prefix".

    Returns:
      :class:`SeqExamples`, in user order (and prefix order within a user).
    """
    if kind not in EXAMPLE_KINDS:
        raise ConfigError(f"examples={kind!r}; expected one of {EXAMPLE_KINDS}")
    lengths = data.lengths()
    pad = data.n_items
    if kind == "sequence":
        keep = np.flatnonzero(lengths >= 2)
        # history = seq[:-1][-L:], targets = seq[1:][-L:]: shift the full tail by one.
        full = left_pad(data, max_len + 1)
        history, targets = full[:, :-1], full[:, 1:].copy()
        targets[history == pad] = pad
        return SeqExamples(keep.astype(np.int32), history[keep], targets[keep], pad)
    # "prefix": one example per position i >= 1 of every sequence.
    users = np.repeat(np.arange(data.n_users), np.maximum(lengths - 1, 0))
    starts = data.offsets[:-1][users]
    within = np.arange(users.size) - np.repeat(
        np.cumsum(np.maximum(lengths - 1, 0)) - np.maximum(lengths - 1, 0),
        np.maximum(lengths - 1, 0),
    )
    ends = starts + within + 1  # history = items[starts:ends], target = items[ends]
    targets = data.items[ends].astype(np.int32)[:, None]
    cols = np.arange(max_len)
    first = ends[:, None] - max_len + cols[None, :]
    history = np.where(first >= starts[:, None], data.items[np.clip(first, 0, None)], pad).astype(
        np.int32
    )
    return SeqExamples(users.astype(np.int32), history, targets, pad)
