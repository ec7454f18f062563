"""The batch loop every evaluator shares: score and rank users batch by batch, pipelined.

A batch is dispatched to the device (asynchronously) before the previous one is collected, so
the host prepares batch i+1 while the device scores batch i; at most two batches are in flight,
so memory stays bounded whatever the number of users.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from diffrec_jax.errors import DiffrecError
from diffrec_jax.metrics._topk import pad_indices

Dispatch = Callable[[np.ndarray], tuple[Mapping[str, tuple[Any, Any]], Any]]
"""``dispatch(padded_users [b] int) -> ({part: (items [b, k], valid [b, k])}, has_nan [b])``."""


def collect_top_items(
    users: np.ndarray,
    n_rows: int,
    k: int,
    parts: Sequence[str],
    batch_size: int,
    dispatch: Dispatch,
) -> dict[str, np.ndarray]:
    """The top-`k` items of `users` for every part, from the compiled `dispatch` step.

    Args:
      users: [n] int row indices to score (may be empty).
      n_rows: rows of the output (users not in `users` keep -1).
      k: items per row.
      parts: the parts `dispatch` returns.
      batch_size: rows per call; the last batch is padded (:func:`pad_indices`) to keep one
        compiled shape, the padding rows dropped.
      dispatch: the step (see :data:`Dispatch`).

    Returns:
      {part: [n_rows, k] int32 item indices, -1 where there is no valid item}.

    Raises:
      DiffrecError: the scores of a user hold NaN (the user is named).
    """
    top = {p: np.full((n_rows, k), -1, np.int32) for p in parts}
    if users.size == 0:
        return top
    b = min(batch_size, users.size)

    def collect(idx: np.ndarray, result) -> None:
        out, has_nan = result
        has_nan = np.asarray(has_nan)[: idx.size]
        if has_nan.any():
            u = int(idx[np.argmax(has_nan)])
            raise DiffrecError(
                f"score_fn returned NaN scores for user {u}; expected finite or infinite scores"
            )
        for p in parts:
            items, valid = (np.asarray(a)[: idx.size] for a in out[p])
            top[p][idx] = np.where(valid, items, -1)

    pending: collections.deque = collections.deque()
    for start in range(0, users.size, b):
        idx = users[start : start + b]
        pending.append((idx, dispatch(pad_indices(idx, b))))  # dispatched asynchronously
        if len(pending) > 1:
            collect(*pending.popleft())
    while pending:
        collect(*pending.popleft())
    return top
