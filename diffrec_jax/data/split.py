"""The train / valid / test split container and the functions that make splits.

Every splitting function is deterministic (seeded with ``np.random.default_rng(seed)`` where
random) and returns a :class:`Split` whose three matrices have the input's shape, ids, values and
timestamps, partition its entries exactly, and whose history ends with a line describing the split.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.errors import ConfigError, DataError


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """Three interaction matrices over one index space (same users x items shape).

    The evaluation protocol of the whole library: a model is fit on `train`; validation ranks all
    items for every user with `train` rows as input and train items excluded, against `valid`;
    test does the same with train and valid items excluded, against `test` (the DiffRec protocol;
    leave-one-out sequential splits feed the valid item as history instead, see
    `diffrec_jax.data.sequences`).

    Attributes:
      train: the matrix models are fit on.
      valid: held-out interactions for model selection.
      test: held-out interactions for the final report.
      name: a short dataset/split name for tables and results files.
      history: preprocessing and splitting steps that produced it (human-readable lines).
    """

    train: InteractionMatrix
    valid: InteractionMatrix
    test: InteractionMatrix
    name: str = "split"
    history: tuple[str, ...] = ()

    def __post_init__(self):
        for part in ("valid", "test"):
            m = getattr(self, part)
            if m.shape != self.train.shape:
                raise DataError(
                    f"{part} matrix has shape {m.shape}, expected the train shape "
                    f"{self.train.shape}"
                )

    @property
    def n_users(self) -> int:
        return self.train.n_users

    @property
    def n_items(self) -> int:
        return self.train.n_items


# -- splitting functions --------------------------------------------------------------------------
#
# Per-user rounding rule (random_holdout, temporal_holdout): a user with n interactions gets
#   n_test = round_half_up(n * r_test), n_valid = round_half_up(n * r_valid),
# and train keeps the rest, at least 1 when n >= 1: if n_valid + n_test > n - 1, the excess is
# taken from valid first, then from test. So users with few interactions may have no valid or no
# test item (the history says how many); a user with 1 interaction is train only.


def _check_ratios(ratios) -> tuple[float, float, float]:
    try:
        r = tuple(float(x) for x in ratios)
    except (TypeError, ValueError):
        raise ConfigError(
            f"ratios={ratios!r}; expected three numbers (train, valid, test)"
        ) from None
    if len(r) != 3:
        raise ConfigError(f"ratios={ratios!r}; expected three numbers (train, valid, test)")
    if not all(np.isfinite(x) and x > 0 for x in r):
        raise ConfigError(f"ratios={ratios!r}; expected every ratio to be positive")
    if abs(sum(r) - 1.0) > 1e-6:
        raise ConfigError(f"ratios={ratios!r} sum to {sum(r):g}; expected them to sum to 1")
    return r


def _round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5 + 1e-9).astype(np.int64)


def holdout_sizes(n: np.ndarray, ratios) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user (n_train, n_valid, n_test) for [n_users] counts `n` under the rounding rule.

    ``n_test = floor(n * r_test + 0.5)``, ``n_valid = floor(n * r_valid + 0.5)`` (round half
    up); if that leaves train empty for a user with n >= 1, the excess is taken from valid
    first, then test, so train keeps at least 1. E.g. with (0.7, 0.1, 0.2): n = 3 -> (2, 0, 1),
    n = 5 -> (3, 1, 1), n = 10 -> (7, 1, 2).
    """
    _, r_valid, r_test = _check_ratios(ratios)
    n = np.asarray(n, np.int64)
    n_test = _round_half_up(n * r_test)
    n_valid = _round_half_up(n * r_valid)
    excess = np.maximum(0, n_valid + n_test - np.maximum(n - 1, 0))
    from_valid = np.minimum(excess, n_valid)
    n_valid = n_valid - from_valid
    n_test = n_test - (excess - from_valid)
    return n - n_valid - n_test, n_valid, n_test


def _entry_rows(m: InteractionMatrix) -> np.ndarray:
    return np.repeat(np.arange(m.n_users, dtype=np.int64), m.user_lengths())


def _subset(m: InteractionMatrix, mask: np.ndarray) -> InteractionMatrix:
    """The entries of `m` where `mask` ([nnz] bool, CSR order) is True, same shape and ids."""
    counts = np.bincount(_entry_rows(m)[mask], minlength=m.n_users)
    indptr = np.zeros(m.n_users + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    csr = sp.csr_array(
        (np.asarray(m.csr.data)[mask], np.asarray(m.csr.indices)[mask], indptr), shape=m.shape
    )
    ts = None if m.timestamps is None else m.timestamps[mask]
    return InteractionMatrix(csr, ts, m.user_ids, m.item_ids)


def _split_by_rank(
    m: InteractionMatrix,
    order: np.ndarray,
    n_train: np.ndarray,
    n_valid: np.ndarray,
    name: str,
    history,
    step: str,
) -> Split:
    """Splits with `order` (entries sorted by user, then rank): the first n_train[u] ranks of
    user u go to train, the next n_valid[u] to valid, the rest to test."""
    rows = _entry_rows(m)
    rank = np.empty(m.nnz, np.int64)
    rank[order] = np.arange(m.nnz) - m.csr.indptr[rows[order]]
    part = np.where(rank < n_train[rows], 0, np.where(rank < (n_train + n_valid)[rows], 1, 2))
    return _make_split(m, part, name, history, step)


def _make_split(m: InteractionMatrix, part: np.ndarray, name: str, history, step: str) -> Split:
    train, valid, test = (_subset(m, part == p) for p in range(3))
    lengths = {"valid": valid.user_lengths(), "test": test.user_lengths()}
    present = m.user_lengths() > 0
    empty = {k: int(np.sum(present & (v == 0))) for k, v in lengths.items()}
    step += (
        f": train {train.nnz} / valid {valid.nnz} / test {test.nnz} interactions; "
        f"of {int(present.sum())} users, {empty['valid']} have no valid and "
        f"{empty['test']} no test interaction"
    )
    return Split(train, valid, test, name=name, history=tuple(history) + (step,))


def random_holdout(
    m: InteractionMatrix, ratios=(0.8, 0.1, 0.1), seed: int = 0, *, name: str = "split", history=()
) -> Split:
    """Per-user random holdout.

    Every user's interactions are shuffled with ``np.random.default_rng(seed)`` and cut into
    train / valid / test by the per-user rounding rule (see :func:`holdout_sizes`). Values and
    timestamps follow their entries.

    Args:
      m: the interactions.
      ratios: (train, valid, test) fractions, positive, summing to 1.
      seed: the shuffling seed.
      name, history: the split's name, and the steps before it (the split appends its own).
    """
    r = _check_ratios(ratios)
    n_train, n_valid, _ = holdout_sizes(m.user_lengths(), r)
    keys = np.random.default_rng(seed).random(m.nnz)
    order = np.lexsort((keys, _entry_rows(m)))
    step = (
        f"random_holdout(ratios={r}, seed={seed}) per user, n_test = round(n * {r[2]:g}), "
        f"n_valid = round(n * {r[1]:g}) (half up), train keeps the rest (>= 1)"
    )
    return _split_by_rank(m, order, n_train, n_valid, name, history, step)


def _require_timestamps(m: InteractionMatrix, what: str) -> np.ndarray:
    if m.timestamps is None:
        raise DataError(
            f"{what} needs timestamps, but the matrix has none (use random_holdout, "
            "or load a file with a timestamp column)"
        )
    return m.timestamps


def temporal_holdout(
    m: InteractionMatrix, ratios=(0.8, 0.1, 0.1), *, name: str = "split", history=()
) -> Split:
    """Per-user temporal holdout: each user's earliest interactions go to train, the next to
    valid, the latest to test, sized by the per-user rounding rule (:func:`holdout_sizes`).
    Equal timestamps are ordered by item index.

    Raises:
      DataError: the matrix has no timestamps.
    """
    r = _check_ratios(ratios)
    ts = _require_timestamps(m, "temporal_holdout")
    n_train, n_valid, _ = holdout_sizes(m.user_lengths(), r)
    order = np.lexsort((m.csr.indices, ts, _entry_rows(m)))
    step = (
        f"temporal_holdout(ratios={r}) per user by timestamp (ties by item index), "
        f"n_test = round(n * {r[2]:g}), n_valid = round(n * {r[1]:g}) (half up), train "
        "keeps the rest (>= 1)"
    )
    return _split_by_rank(m, order, n_train, n_valid, name, history, step)


def global_temporal(
    m: InteractionMatrix, ratios=(0.8, 0.1, 0.1), *, name: str = "split", history=()
) -> Split:
    """Global temporal split at time quantiles.

    All interactions are ordered by (timestamp, user index, item index); the first
    ``nnz - n_valid - n_test`` go to train, the next ``n_valid = round(nnz * r_valid)`` to
    valid and the last ``n_test = round(nnz * r_test)`` to test. Nothing in train is later than
    anything in valid or test; interactions with the same timestamp at a boundary may fall on
    both sides. Users first seen in valid/test (no train rows) are counted in the history.

    Raises:
      DataError: the matrix has no timestamps.
    """
    r = _check_ratios(ratios)
    ts = _require_timestamps(m, "global_temporal")
    rows = _entry_rows(m)
    order = np.lexsort((m.csr.indices, rows, ts))
    n_test = int(_round_half_up(np.array(m.nnz * r[2])))
    n_valid = int(_round_half_up(np.array(m.nnz * r[1])))
    n_train = m.nnz - n_valid - n_test
    part = np.empty(m.nnz, np.int64)
    part[order] = np.repeat([0, 1, 2], [n_train, n_valid, n_test])
    cuts = [ts[order[k]] for k in (n_train, n_train + n_valid) if k < m.nnz]
    has_train = np.zeros(m.n_users, bool)
    has_train[rows[part == 0]] = True
    cold = {
        p: len(np.setdiff1d(rows[part == k], np.flatnonzero(has_train)))
        for k, p in ((1, "valid"), (2, "test"))
    }
    step = (
        f"global_temporal(ratios={r}) at times {[float(c) for c in cuts]} (order: timestamp, "
        f"user, item); {cold['valid']} valid and {cold['test']} test users have no train "
        "interaction"
    )
    return _make_split(m, part, name, history, step)


def leave_one_out(
    m: InteractionMatrix, *, short_users: str = "raise", name: str = "split", history=()
) -> Split:
    """Per-user leave-one-out by time: the latest interaction -> test, the second latest ->
    valid, the rest -> train (equal timestamps ordered by item index).

    Args:
      short_users: users with 1 or 2 interactions: "raise" (default; a DataError names the
        first one) or "train" (keep all their interactions in train; the history says how
        many). Users without interactions stay empty.

    Raises:
      DataError: no timestamps, or a short user with short_users="raise".
    """
    if short_users not in ("raise", "train"):
        raise ConfigError(f"short_users={short_users!r}; expected 'raise' or 'train'")
    ts = _require_timestamps(m, "leave_one_out")
    n = m.user_lengths()
    short = (n > 0) & (n < 3)
    if short.any() and short_users == "raise":
        u = int(np.flatnonzero(short)[0])
        raw = u if m.user_ids is None else int(m.user_ids[u])
        raise DataError(
            f"user {raw} (index {u}) has {n[u]} interactions; leave-one-out needs at "
            f"least 3 ({int(short.sum())} users are that short; pass "
            "short_users='train' to keep them in train only)"
        )
    held = np.where(n >= 3, 1, 0)
    order = np.lexsort((m.csr.indices, ts, _entry_rows(m)))
    step = (
        f"leave_one_out by timestamp (ties by item index): latest -> test, second latest -> "
        f"valid; {int(short.sum())} users with fewer than 3 interactions kept in train only"
    )
    return _split_by_rank(m, order, n - 2 * held, held, name, history, step)
