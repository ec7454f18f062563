"""Pure preprocessing steps on an :class:`InteractionLog`.

Every step returns a new log and appends one line to its `history` saying what it did and how
many rows, users and items it removed. The usual pipeline is::

    log = binarize(log, 4.0)              # explicit -> implicit feedback (optional)
    log = deduplicate(log, "last")        # one row per (user, item)
    log = kcore(log, 5, 5)                # optional
    matrix = to_matrix(log)               # contiguous indices, raw-id maps kept
"""

from __future__ import annotations

import numpy as np

from diffrec_jax.data.interactions import InteractionLog, InteractionMatrix
from diffrec_jax.errors import ConfigError, DataError

DEDUP_POLICIES = ("error", "first", "last")


def _n_unique(a: np.ndarray) -> int:
    """Number of distinct values (sort based: faster than np.unique's hashing on many values)."""
    s = np.sort(a)
    return int(len(s) > 0) + int(np.count_nonzero(s[1:] != s[:-1]))


def _select(log: InteractionLog, keep: np.ndarray, what: str) -> InteractionLog:
    """`log.select(keep)` with a history line counting the dropped rows, users and items."""
    n_users, n_items = _n_unique(log.users), _n_unique(log.items)
    kept_users, kept_items = _n_unique(log.users[keep]), _n_unique(log.items[keep])
    dropped = len(log) - int(np.count_nonzero(keep))
    step = (
        f"{what}: dropped {dropped} of {len(log)} rows, {n_users - kept_users} of "
        f"{n_users} users, {n_items - kept_items} of {n_items} items"
    )
    return log.select(keep, step)


def binarize(log: InteractionLog, threshold: float) -> InteractionLog:
    """Keeps the rows with rating >= threshold (explicit -> implicit feedback).

    The ratings column is kept as is (:func:`to_matrix` gives value 1 to every kept row unless
    asked for ratings).

    Raises:
      DataError: the log has no ratings.
    """
    if log.ratings is None:
        raise DataError("binarize needs ratings, but the log has no rating column", path=log.source)
    if not np.isfinite(threshold):
        raise ConfigError(f"threshold={threshold}; expected a finite number")
    return _select(log, log.ratings >= threshold, f"binarize(rating >= {threshold:g})")


def deduplicate(log: InteractionLog, policy: str) -> InteractionLog:
    """Keeps one row per (user, item) pair.

    Policies:
      - "error": raise a DataError naming the first row (0-based, in log order) whose pair
        already occurred earlier, and that earlier row.
      - "first": keep the earliest occurrence: smallest timestamp when the log has timestamps
        (ties: the earlier row), else the earlier row.
      - "last": keep the latest occurrence: largest timestamp when the log has timestamps
        (ties: the later row), else the later row.

    Kept rows stay in log order, with their own rating and timestamp.
    """
    if policy not in DEDUP_POLICIES:
        raise ConfigError(f"policy={policy!r}; expected one of {', '.join(DEDUP_POLICIES)}")
    rows = np.arange(len(log))
    keys = [rows]
    if log.timestamps is not None and policy != "error":
        keys.append(log.timestamps)
    order = np.lexsort(tuple(keys) + (log.items, log.users))
    su, si = log.users[order], log.items[order]
    same_as_prev = np.zeros(len(order), bool)
    same_as_prev[1:] = (su[1:] == su[:-1]) & (si[1:] == si[:-1])
    if policy == "error":
        if same_as_prev.any():
            later = order[same_as_prev]
            row = int(later.min())
            k = int(np.flatnonzero(order == row)[0])
            first = k
            while same_as_prev[first]:
                first -= 1
            raise DataError(
                f"row {row} (user {log.users[row]}, item {log.items[row]}) repeats "
                f"row {int(order[first])}; expected each (user, item) pair once",
                path=log.source,
                row=row,
            )
        return log.select(
            np.ones(len(log), bool), "deduplicate(policy='error'): no duplicate (user, item) pairs"
        )
    if policy == "first":
        chosen = order[~same_as_prev]
    else:
        is_last = np.ones(len(order), bool)
        is_last[:-1] = ~same_as_prev[1:]
        chosen = order[is_last]
    keep = np.zeros(len(log), bool)
    keep[chosen] = True
    by = "timestamp, then row order" if log.timestamps is not None else "row order"
    return _select(log, keep, f"deduplicate(policy={policy!r}, by {by})")


def kcore(log: InteractionLog, user_k: int, item_k: int) -> InteractionLog:
    """Iteratively drops users with fewer than `user_k` rows and items with fewer than
    `item_k` rows until both conditions hold (the (user_k, item_k)-core; unique).

    Counts are rows, so deduplicate first if repeated pairs should count once. A threshold of
    0 or 1 leaves that side unconstrained.
    """
    for name, k in (("user_k", user_k), ("item_k", item_k)):
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
            raise ConfigError(f"{name}={k!r}; expected a non-negative integer")
    _, users = np.unique(log.users, return_inverse=True)
    _, items = np.unique(log.items, return_inverse=True)
    keep = np.ones(len(log), bool)
    rounds = 0
    while True:
        rounds += 1
        user_counts = np.bincount(users[keep], minlength=users.max(initial=-1) + 1)
        item_counts = np.bincount(items[keep], minlength=items.max(initial=-1) + 1)
        new_keep = keep & (user_counts[users] >= user_k) & (item_counts[items] >= item_k)
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return _select(log, keep, f"kcore(user_k={user_k}, item_k={item_k}, {rounds} rounds)")


def to_matrix(log: InteractionLog, *, use_ratings: bool = False) -> InteractionMatrix:
    """Builds the interaction matrix with contiguous indices.

    Users and items are numbered in sorted raw-id order; `user_ids` / `item_ids` map indices
    back to raw ids. Timestamps are carried over.

    Args:
      log: a log with one row per (user, item) pair (see :func:`deduplicate`).
      use_ratings: store the ratings as values (default: value 1, implicit feedback).

    Raises:
      DataError: empty log, a repeated (user, item) pair (row named), or `use_ratings`
        without ratings.
    """
    if len(log) == 0:
        raise DataError("the log has no rows; expected at least one interaction", path=log.source)
    if use_ratings and log.ratings is None:
        raise DataError("use_ratings=True but the log has no ratings", path=log.source)
    user_ids, users = np.unique(log.users, return_inverse=True)
    item_ids, items = np.unique(log.items, return_inverse=True)
    return InteractionMatrix.from_arrays(
        users,
        items,
        shape=(len(user_ids), len(item_ids)),
        values=log.ratings if use_ratings else None,
        timestamps=log.timestamps,
        user_ids=user_ids,
        item_ids=item_ids,
        source=log.source,
    )
