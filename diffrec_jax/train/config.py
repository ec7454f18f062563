"""The training loop's configuration, as code."""

from __future__ import annotations

import dataclasses
from typing import Any

from diffrec_jax.errors import ConfigError

LAST_BATCH_POLICIES = ("pad", "drop")

# Fields that shape the training trajectory: a checkpoint may only be resumed with the same
# values (max_epochs, patience, logging and checkpoint cadence may change between runs).
TRAJECTORY_FIELDS = (
    "batch_size",
    "shuffle",
    "last_batch",
    "eval_every",
    "select_metric",
    "ks",
    "convention",
)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train a :class:`~diffrec_jax.protocol.Trainable`.

    The defaults follow DiffRec's: batch 400, shuffled every epoch, up to 1000 epochs,
    validation Recall@20 every 5 epochs; the generic default patience is 4 evaluations (20
    epochs), while the DiffRec model itself uses 3, as the original code
    (``diffrec_jax.models.diffrec``).

    Attributes:
      batch_size: users per optimisation step (global, over all devices); a batch that does not
        split evenly over the devices is padded with zero-weight rows.
      max_epochs: upper bound on the number of epochs.
      eval_every: evaluate on validation after every `eval_every`-th epoch (epochs counted
        from 1, as in the original code: epochs 5, 10, ...).
      patience: stop after this many consecutive evaluations without a strict improvement of
        `select_metric`; None never stops early.
      select_metric: summary key of the validation metric to maximise, e.g. "Recall@20".
      ks: metric cutoffs of the validation evaluator.
      convention: metric convention of the validation evaluator ("recbole", ...).
      eval_batch_size: users per evaluation batch (None: the evaluator's default).
      seed: seeds everything (initialisation, step keys, batch order) when `train` is called
        without a key; `Recommender.fit(data, key)` passes its key instead.
      shuffle: draw a new user order every epoch (the original shuffles); False keeps user
        index order.
      last_batch: what happens to the users left over after the last full batch.
        "pad" (default, as the original which trains on the short last batch): the batch is
        filled up to `batch_size` with repeated users of weight 0 (`UserBatch.weights`), so one
        compiled step serves every batch and a loss averaging with `mean_over_rows` sees only
        the real rows. "drop": the leftover users skip this epoch (a new order picks others
        next epoch).
      checkpoint_dir: directory of orbax checkpoints of the full training state, or None. If it
        already holds checkpoints, training resumes from the latest one.
      checkpoint_every: save after every `checkpoint_every`-th epoch (and when training ends).
      keep_checkpoints: how many of the latest checkpoints to keep.
      log_every: log a progress line every `log_every` epochs (and after every evaluation).
    """

    batch_size: int = 400
    max_epochs: int = 1000
    eval_every: int = 5
    patience: int | None = 4
    select_metric: str = "Recall@20"
    ks: tuple[int, ...] = (10, 20)
    convention: str = "recbole"
    eval_batch_size: int | None = None
    seed: int = 0
    shuffle: bool = True
    last_batch: str = "pad"
    checkpoint_dir: str | None = None
    checkpoint_every: int = 5
    keep_checkpoints: int = 2
    log_every: int = 1

    def __post_init__(self):
        object.__setattr__(self, "ks", tuple(self.ks))
        for name in (
            "batch_size",
            "max_epochs",
            "eval_every",
            "checkpoint_every",
            "keep_checkpoints",
            "log_every",
        ):
            _positive_int(name, getattr(self, name))
        if self.patience is not None:
            _positive_int("patience", self.patience)
        if self.eval_batch_size is not None:
            _positive_int("eval_batch_size", self.eval_batch_size)
        if not self.ks or not all(isinstance(k, int) and k > 0 for k in self.ks):
            raise ConfigError(f"TrainConfig.ks must be positive ints, got {self.ks!r}")
        if self.last_batch not in LAST_BATCH_POLICIES:
            raise ConfigError(
                f"TrainConfig.last_batch={self.last_batch!r}; expected one of {LAST_BATCH_POLICIES}"
            )
        if not isinstance(self.shuffle, bool):
            raise ConfigError(f"TrainConfig.shuffle must be a bool, got {self.shuffle!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"TrainConfig.seed must be an int >= 0, got {self.seed!r}")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def trajectory(self) -> dict[str, Any]:
        """The fields that must match for a checkpoint to be resumed (JSON-friendly)."""
        return {
            name: (list(v) if isinstance(v := getattr(self, name), tuple) else v)
            for name in TRAJECTORY_FIELDS
        }


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"TrainConfig.{name} must be a positive int, got {value!r}")
