"""The evaluation protocol of the library: any model's score function on a Split, in one pass.

Valid: input rows = train rows, train items excluded, against the valid items. Test: the same
input rows, train and valid items excluded, against the test items (the DiffRec protocol). The
scores of a user batch are computed ONCE and ranked for both parts; score function and top-K are
one jit-compiled step (compiled once per score function, parts and batch shape: batches are
padded to the fixed batch size, the padding rows ignored). Only users with truth in at least one
requested part are scored; the others get NaN per-user values (and the "diffrec" convention
still divides by all users of the split). Metrics: :mod:`diffrec_jax.metrics`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diffrec_jax.data.split import Split
from diffrec_jax.errors import ConfigError, DiffrecError
from diffrec_jax.evaluation.topk_loop import collect_top_items
from diffrec_jax.metrics import EvalResult, default_batch_size, evaluate_top_items
from diffrec_jax.metrics import _evaluate as _ev
from diffrec_jax.metrics._topk import dense_pattern, masked_top_k_impl
from diffrec_jax.protocol import Params, UserBatch

PARTS = ("valid", "test")
ScoreFn = Callable[[Params, UserBatch], jax.Array]


@functools.partial(jax.jit, static_argnames=("score_fn", "k", "parts"))
def _score_and_rank(
    params: Params,
    users: jax.Array,
    rows: jax.Array,
    train_mask: jax.Array,
    valid_mask: jax.Array | None,
    *,
    score_fn: ScoreFn,
    k: int,
    parts: tuple[str, ...],
):
    """One batch: scores once, then top-k per part.

    Args:
      users: [B] int32; rows: [B, n_items] float32 train rows (model input); train_mask,
        valid_mask: [B, n_items] bool stored train / valid entries (valid_mask None when "test"
        is not requested).

    Returns:
      ({part: (items [B, k] int32, valid [B, k] bool)}, has_nan [B] bool).
    """
    scores = score_fn(params, UserBatch(users, rows))
    if scores.shape != rows.shape:
        raise DiffrecError(
            f"score_fn returned shape {scores.shape}, expected {rows.shape} ([batch, n_items])"
        )
    out = {}
    has_nan = None
    for part in parts:
        if part == "valid":
            mask = train_mask
        elif valid_mask is None:
            raise DiffrecError(f"part {part!r} needs valid_mask (the stored valid entries)")
        else:
            mask = train_mask | valid_mask
        items, valid, has_nan = masked_top_k_impl(scores, mask, k)
        out[part] = (items, valid)
    return out, has_nan


class Evaluator:
    """Evaluates score functions on a Split with the DiffRec protocol.

    Args:
      split: train/valid/test matrices over one index space.
      ks: cutoffs (K > n_items is clipped, see :mod:`diffrec_jax.metrics`).
      convention: metric convention, "recbole" (default), "diffrec" or "recsys2019".
      batch_size: users per batch; default keeps batch x n_items <= 2**24 and <= 1024 users.
        Results do not depend on it.

    Train items are excluded by their stored entries (binary pattern); the model input rows are
    the train values (``InteractionMatrix.dense_rows``). item_popularity for Novelty/AvgPop is
    ``split.train.item_counts()``.
    """

    def __init__(
        self,
        split: Split,
        *,
        ks: int | Sequence[int] = (10, 20),
        convention: str = "recbole",
        batch_size: int | None = None,
    ):
        self.split = split
        self.ks = _ev.check_ks(ks)
        self.convention = _ev.check_convention(convention)
        batch_size = _ev.check_batch_size(batch_size)
        self.batch_size = default_batch_size(split.n_items) if batch_size is None else batch_size
        self.k = min(max(self.ks), split.n_items)
        shape = split.train.shape
        # Canonical patterns: a stored entry is an interaction whatever its value.
        self._train = _ev.as_pattern_csr(split.train.binary().csr, "train", shape)
        self._truth = {
            p: _ev.as_pattern_csr(getattr(split, p).binary().csr, p, shape) for p in PARTS
        }
        self._train_values = split.train
        self._item_popularity = split.train.item_counts()

    def users_to_score(self, parts: Sequence[str] = PARTS) -> np.ndarray:
        """[n] int64 sorted users with truth in at least one of `parts`."""
        parts = self._check_parts(parts)
        has = np.zeros(self.split.n_users, bool)
        for p in parts:
            has |= np.diff(self._truth[p].indptr) > 0
        return np.flatnonzero(has)

    def batches(self, parts: Sequence[str] = PARTS) -> int:
        """Number of score_fn calls one :meth:`evaluate` makes."""
        n = self.users_to_score(parts).size
        return -(-n // self.batch_size) if n else 0

    def evaluate(
        self, score_fn: ScoreFn, params: Params, parts: Sequence[str] = PARTS
    ) -> dict[str, EvalResult]:
        """Scores the users once and evaluates every requested part.

        Args:
          score_fn: ``score_fn(params, UserBatch) -> [B, n_items]``, pure and jit-able. Pass the
            same function object on every call to reuse the compiled step.
          params: its parameters (a pytree).
          parts: a non-empty subset of ("valid", "test").

        Returns:
          {part: EvalResult} in the order of `parts`.

        Raises:
          DiffrecError: score_fn returns NaN (the user is named) or a wrong shape.
        """
        parts = self._check_parts(parts)
        users = self.users_to_score(parts)
        n_users = self.split.n_users
        step = functools.partial(_score_and_rank, score_fn=score_fn, k=self.k, parts=parts)

        def dispatch(padded: np.ndarray):
            rows = self._train_values.dense_rows(padded)
            train_mask = dense_pattern(self._train, padded)
            valid_mask = dense_pattern(self._truth["valid"], padded) if "test" in parts else None
            return step(params, jnp.asarray(padded, jnp.int32), rows, train_mask, valid_mask)

        top = collect_top_items(users, n_users, self.k, parts, self.batch_size, dispatch)
        return {
            p: evaluate_top_items(
                top[p],
                self._truth[p],
                ks=self.ks,
                convention=self.convention,
                item_popularity=self._item_popularity,
            )
            for p in parts
        }

    def _check_parts(self, parts: Sequence[str]) -> tuple[str, ...]:
        if isinstance(parts, str):
            parts = (parts,)
        parts = tuple(parts)
        if not parts or len(set(parts)) != len(parts) or not set(parts) <= set(PARTS):
            raise ConfigError(
                f"parts={parts!r}; expected a non-empty subset of {PARTS} without repeats"
            )
        return parts


def evaluate_split(
    score_fn: ScoreFn,
    params: Params,
    split: Split,
    *,
    parts: Sequence[str] = PARTS,
    ks: int | Sequence[int] = (10, 20),
    convention: str = "recbole",
    batch_size: int | None = None,
) -> dict[str, EvalResult]:
    """Function form of ``Evaluator(split, ...).evaluate(score_fn, params, parts)``."""
    return Evaluator(split, ks=ks, convention=convention, batch_size=batch_size).evaluate(
        score_fn, params, parts
    )


__all__ = ["PARTS", "Evaluator", "ScoreFn", "evaluate_split"]
