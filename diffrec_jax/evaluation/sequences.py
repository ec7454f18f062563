"""The evaluation protocol of sequential models: leave-one-out, full ranking, one target.

Valid: input ``seq[:-2][-L:]`` (the training sequence), target the second-to-last item. Test:
input ``seq[:-1][-L:]`` (train plus the valid item), target the last item. Every item is ranked
(full ranking, no sampled negatives). ``exclude_history`` is a named option: False (default, as
in the ADRec, DiffuRec and SASRec papers) ranks the history items too; True never recommends an
item of the input history. Metrics as :mod:`diffrec_jax.metrics` (with one relevant item,
HitRate@K equals Recall@K; tables call it HR@K).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from diffrec_jax.data.sequences import SequenceSplit
from diffrec_jax.errors import ConfigError, DiffrecError
from diffrec_jax.evaluation.topk_loop import collect_top_items
from diffrec_jax.metrics import EvalResult, default_batch_size, evaluate_top_items
from diffrec_jax.metrics import _evaluate as _ev
from diffrec_jax.metrics._topk import masked_top_k_impl
from diffrec_jax.protocol import Params, SeqBatch, SeqFitData, left_pad

PARTS = ("valid", "test")
SEQ_KS = (5, 10, 20)
SeqScoreFn = Callable[[Params, SeqBatch], jax.Array]


@functools.partial(jax.jit, static_argnames=("score_fn", "k", "n_items", "exclude_history"))
def _score_and_rank(
    params: Params,
    users: jax.Array,
    history: jax.Array,
    *,
    score_fn: SeqScoreFn,
    k: int,
    n_items: int,
    exclude_history: bool,
):
    """One batch: scores [B, n_items], then the top-k items ([B, k] int32, [B, k] bool valid)."""
    scores = score_fn(params, SeqBatch(users, history))
    if scores.shape != (history.shape[0], n_items):
        raise DiffrecError(
            f"score_fn returned shape {scores.shape}, expected "
            f"{(history.shape[0], n_items)} ([batch, n_items])"
        )
    if exclude_history:
        rows = jnp.arange(history.shape[0])[:, None]
        # The padding value n_items falls off the end of the mask (dropped scatter).
        exclude = jnp.zeros(scores.shape, bool).at[rows, history].set(True, mode="drop")
    else:
        exclude = jnp.zeros(scores.shape, bool)
    items, valid, has_nan = masked_top_k_impl(scores, exclude, k)
    return (items, valid), has_nan


class SequenceEvaluator:
    """Evaluates sequential score functions on leave-one-out parts.

    Args:
      inputs: {part: (histories [n_users, L] int32 left-padded with n_items, targets [n_users]
        int)} for the parts it can evaluate.
      n_items: number of items.
      ks: cutoffs (default 5, 10, 20).
      exclude_history: never recommend an item of the input history (default False, as the
        papers).
      convention: metric convention (see :mod:`diffrec_jax.metrics`).
      batch_size: users per score call; results do not depend on it.
      item_popularity: [n_items] train counts for Novelty/AvgPop, or None.

    Build it with :meth:`from_split` (valid and test) or :meth:`from_fit_data` (valid only, for
    early stopping: the test targets are not reachable from a :class:`SeqFitData`).
    """

    def __init__(
        self,
        inputs: Mapping[str, tuple[np.ndarray, np.ndarray]],
        n_items: int,
        *,
        ks: int | Sequence[int] = SEQ_KS,
        exclude_history: bool = False,
        convention: str = "recbole",
        batch_size: int | None = None,
        item_popularity: np.ndarray | None = None,
    ):
        if not isinstance(exclude_history, bool | np.bool_):
            raise ConfigError(f"exclude_history={exclude_history!r}; expected True or False")
        self.ks = _ev.check_ks(ks)
        self.convention = _ev.check_convention(convention)
        batch_size = _ev.check_batch_size(batch_size)
        self.n_items = int(n_items)
        self.batch_size = default_batch_size(n_items) if batch_size is None else batch_size
        self.k = min(max(self.ks), self.n_items)
        self.exclude_history = bool(exclude_history)
        self.item_popularity = item_popularity
        self.inputs = {}
        for part, (hist, targets) in inputs.items():
            if part not in PARTS:
                raise ConfigError(f"part {part!r}; expected one of {PARTS}")
            hist = np.asarray(hist, np.int32)
            targets = np.asarray(targets, np.int64)
            if hist.ndim != 2 or targets.shape != (hist.shape[0],):
                raise ConfigError(
                    f"{part}: histories {hist.shape} and targets {targets.shape}; expected "
                    "[n_users, L] and [n_users]"
                )
            n = hist.shape[0]
            truth = sp.csr_array(
                (np.ones(n, np.float32), targets, np.arange(n + 1)), shape=(n, self.n_items)
            )
            self.inputs[part] = (hist, truth)

    @classmethod
    def from_split(cls, split: SequenceSplit, max_len: int, **kwargs) -> SequenceEvaluator:
        """Valid and test of a leave-one-out split with histories of length `max_len`."""
        inputs = {
            "valid": (split.histories("valid", max_len), split.valid_targets),
            "test": (split.histories("test", max_len), split.test_targets),
        }
        kwargs.setdefault("item_popularity", _popularity(split.train))
        return cls(inputs, split.n_items, **kwargs)

    @classmethod
    def from_fit_data(cls, data: SeqFitData, max_len: int, **kwargs) -> SequenceEvaluator:
        """Valid only: histories are the training sequences, targets the valid items."""
        if data.valid_targets is None:
            raise ConfigError("SeqFitData.valid_targets is None: nothing to validate on")
        inputs = {"valid": (left_pad(data.train, max_len), data.valid_targets)}
        kwargs.setdefault("item_popularity", _popularity(data.train))
        return cls(inputs, data.n_items, **kwargs)

    def users_to_score(self, parts: Sequence[str] = PARTS) -> np.ndarray:
        """[n] int64 users one part of an :meth:`evaluate` scores (every user; each requested
        part is a separate pass over them)."""
        if isinstance(parts, str):
            parts = (parts,)
        if not parts or not set(parts) <= set(self.inputs):
            raise ConfigError(f"parts={parts!r}; this evaluator holds {tuple(self.inputs)}")
        return np.arange(next(iter(self.inputs.values()))[0].shape[0], dtype=np.int64)

    def evaluate(
        self, score_fn: SeqScoreFn, params: Params, parts: Sequence[str] = PARTS
    ) -> dict[str, EvalResult]:
        """Scores every user's history of each requested part and evaluates it.

        Args:
          score_fn: ``score_fn(params, SeqBatch) -> [B, n_items]``, pure and jit-able. Pass the
            same function object on every call to reuse the compiled step.
          params: its parameters.
          parts: a non-empty subset of the parts this evaluator holds.

        Returns:
          {part: EvalResult}.
        """
        if isinstance(parts, str):
            parts = (parts,)
        parts = tuple(parts)
        if not parts or not set(parts) <= set(self.inputs) or len(set(parts)) != len(parts):
            raise ConfigError(
                f"parts={parts!r}; this evaluator holds {tuple(self.inputs)} (build it with "
                "from_split for valid and test)"
            )
        step = functools.partial(
            _score_and_rank,
            score_fn=score_fn,
            k=self.k,
            n_items=self.n_items,
            exclude_history=self.exclude_history,
        )
        out = {}
        for part in parts:
            hist, truth = self.inputs[part]
            n = hist.shape[0]

            def dispatch(padded: np.ndarray, part=part, hist=hist):
                (items, valid), has_nan = step(
                    params, jnp.asarray(padded, jnp.int32), jnp.asarray(hist[padded])
                )
                return {part: (items, valid)}, has_nan

            top = collect_top_items(np.arange(n), n, self.k, (part,), self.batch_size, dispatch)
            out[part] = evaluate_top_items(
                top[part],
                truth,
                ks=self.ks,
                convention=self.convention,
                item_popularity=self.item_popularity,
            )
        return out


def _popularity(train) -> np.ndarray:
    return np.bincount(train.items, minlength=train.n_items).astype(np.float64)
