"""Containers for user-item interactions.

:class:`InteractionLog` is a raw, columnar table as read from a file (raw integer ids, optional
ratings and timestamps); preprocessing turns it into an :class:`InteractionMatrix`, the immutable
users x items CSR matrix every model and the evaluator consume.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from diffrec_jax.errors import DataError


def _readonly(a: np.ndarray | None) -> np.ndarray | None:
    if a is not None:
        a.setflags(write=False)
    return a


@dataclasses.dataclass(frozen=True, eq=False)
class InteractionLog:
    """A raw interaction table: one row per event, ids as in the source.

    Attributes:
      users: [n] int64 raw user ids.
      items: [n] int64 raw item ids.
      ratings: [n] float64 explicit feedback, or None.
      timestamps: [n] float64 event times, or None.
      source: where the rows came from (a path or a description), used in error messages.
      history: what was done to the rows so far, one human-readable line per step, including how
        many rows each step dropped. Copied into results files.
    """

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    source: str = "<memory>"
    history: tuple[str, ...] = ()

    def __post_init__(self):
        n = len(self.users)
        for name in ("items", "ratings", "timestamps"):
            col = getattr(self, name)
            if col is not None and len(col) != n:
                raise DataError(
                    f"column {name!r} has {len(col)} rows, expected {n} (as users)",
                    path=self.source,
                )
        for name in ("users", "items", "ratings", "timestamps"):
            _readonly(getattr(self, name))

    def __len__(self) -> int:
        return len(self.users)

    def select(self, keep: np.ndarray, step: str) -> InteractionLog:
        """Returns the rows where `keep` ([n] bool) is True, recording `step` in the history."""

        def take(col):
            return None if col is None else col[keep]

        return InteractionLog(
            self.users[keep],
            self.items[keep],
            take(self.ratings),
            take(self.timestamps),
            self.source,
            self.history + (step,),
        )


@dataclasses.dataclass(frozen=True, eq=False)
class InteractionMatrix:
    """An immutable users x items interaction matrix in CSR form.

    Rows are users and columns items, both as contiguous 0-based indices. Within a row the
    column indices are sorted and unique.

    Attributes:
      csr: (n_users, n_items) float32 `scipy.sparse.csr_array`; values are 1 for implicit
        feedback, or weights/ratings.
      timestamps: [nnz] float64 event time of every stored entry, aligned with `csr.data`, or None.
      user_ids: [n_users] raw user id of every row index, or None when the ids are the indices.
      item_ids: [n_items] raw item id of every column index, or None when the ids are the indices.
    """

    csr: sp.csr_array
    timestamps: np.ndarray | None = None
    user_ids: np.ndarray | None = None
    item_ids: np.ndarray | None = None

    def __post_init__(self):
        if not isinstance(self.csr, sp.csr_array):
            object.__setattr__(self, "csr", sp.csr_array(self.csr))
        if self.timestamps is not None and len(self.timestamps) != self.csr.nnz:
            raise DataError(
                f"timestamps has {len(self.timestamps)} entries, expected nnz={self.csr.nnz}"
            )
        if self.user_ids is not None and len(self.user_ids) != self.csr.shape[0]:
            raise DataError(
                f"user_ids has {len(self.user_ids)} entries, expected n_users={self.csr.shape[0]}"
            )
        if self.item_ids is not None and len(self.item_ids) != self.csr.shape[1]:
            raise DataError(
                f"item_ids has {len(self.item_ids)} entries, expected n_items={self.csr.shape[1]}"
            )
        for a in (
            self.csr.data,
            self.csr.indices,
            self.csr.indptr,
            self.timestamps,
            self.user_ids,
            self.item_ids,
        ):
            _readonly(a)

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_arrays(
        cls,
        users: Sequence[int] | np.ndarray,
        items: Sequence[int] | np.ndarray,
        *,
        shape: tuple[int, int] | None = None,
        values: np.ndarray | None = None,
        timestamps: np.ndarray | None = None,
        user_ids: np.ndarray | None = None,
        item_ids: np.ndarray | None = None,
        source: str = "<memory>",
    ) -> InteractionMatrix:
        """Builds a matrix from parallel index arrays.

        Args:
          users, items: [n] 0-based row and column indices.
          shape: (n_users, n_items); defaults to (max index + 1) along each axis.
          values: [n] finite weights; default 1.
          timestamps: [n] event times; default None.
          source: name used in error messages (a path, or "<memory>").

        Raises:
          DataError: negative or out-of-range indices, non-finite values, or a (user, item)
            pair that appears twice (the row index of the second occurrence is named). Remove
            duplicates first with `diffrec_jax.data.preprocess.deduplicate`.
        """
        users = np.asarray(users)
        items = np.asarray(items)
        if users.ndim != 1 or items.shape != users.shape:
            raise DataError(
                f"users and items must be 1-D of equal length, got {users.shape} and {items.shape}",
                path=source,
            )
        for name, a in (("user", users), ("item", items)):
            if a.size and not np.issubdtype(a.dtype, np.integer):
                raise DataError(
                    f"{name} indices must be integers, got dtype {a.dtype}", path=source
                )
            bad = np.flatnonzero(a < 0)
            if bad.size:
                raise DataError(
                    f"negative {name} index {a[bad[0]]}; expected >= 0",
                    path=source,
                    row=int(bad[0]),
                )
        users = users.astype(np.int64)
        items = items.astype(np.int64)
        if shape is None:
            shape = (int(users.max(initial=-1)) + 1, int(items.max(initial=-1)) + 1)
        n_users, n_items = shape
        for name, a, n in (("user", users, n_users), ("item", items, n_items)):
            bad = np.flatnonzero(a >= n)
            if bad.size:
                raise DataError(
                    f"{name} index {a[bad[0]]} out of range; expected < {n}",
                    path=source,
                    row=int(bad[0]),
                )
        if values is None:
            values = np.ones(len(users), np.float32)
        else:
            values = np.asarray(values, np.float64)
            if values.shape != users.shape:
                raise DataError(
                    f"values has shape {values.shape}, expected {users.shape}", path=source
                )
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                raise DataError(
                    f"value {values[bad[0]]} is not finite", path=source, row=int(bad[0])
                )
            values = values.astype(np.float32)
        if timestamps is not None:
            timestamps = np.asarray(timestamps, np.float64)
            bad = np.flatnonzero(~np.isfinite(timestamps))
            if bad.size:
                raise DataError(
                    f"timestamp {timestamps[bad[0]]} is not finite", path=source, row=int(bad[0])
                )
        order = np.lexsort((items, users))
        su, si = users[order], items[order]
        dup = np.flatnonzero((su[1:] == su[:-1]) & (si[1:] == si[:-1]))
        if dup.size:
            row = int(order[dup[0] + 1])
            raise DataError(
                f"duplicate interaction (user {users[row]}, item {items[row]}); "
                "expected each pair once (deduplicate first)",
                path=source,
                row=row,
            )
        indptr = np.zeros(n_users + 1, np.int64)
        np.cumsum(np.bincount(su, minlength=n_users), out=indptr[1:])
        csr = sp.csr_array((values[order], si.astype(np.int32), indptr), shape=(n_users, n_items))
        ts = None if timestamps is None else timestamps[order]
        return cls(csr, ts, user_ids, item_ids)

    # -- properties -----------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int]:
        return self.csr.shape

    @property
    def n_users(self) -> int:
        return self.csr.shape[0]

    @property
    def n_items(self) -> int:
        return self.csr.shape[1]

    @property
    def nnz(self) -> int:
        return self.csr.nnz

    def user_lengths(self) -> np.ndarray:
        """[n_users] int64 number of stored interactions per user."""
        return np.diff(self.csr.indptr).astype(np.int64)

    def item_counts(self) -> np.ndarray:
        """[n_items] int64 number of users that interacted with each item."""
        return np.bincount(self.csr.indices, minlength=self.n_items).astype(np.int64)

    def to_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns (users [nnz], items [nnz], values [nnz]) in CSR order."""
        users = np.repeat(np.arange(self.n_users, dtype=np.int64), self.user_lengths())
        return users, self.csr.indices.astype(np.int64), np.asarray(self.csr.data)

    # -- derived matrices -----------------------------------------------------------------------

    def binary(self) -> InteractionMatrix:
        """The same pattern with every value set to 1."""
        csr = sp.csr_array(
            (np.ones(self.nnz, np.float32), self.csr.indices, self.csr.indptr), shape=self.shape
        )
        return InteractionMatrix(csr, self.timestamps, self.user_ids, self.item_ids)

    def with_values(self, values: np.ndarray) -> InteractionMatrix:
        """The same pattern with new [nnz] values (in CSR order)."""
        values = np.asarray(values, np.float32)
        if values.shape != (self.nnz,):
            raise DataError(f"values has shape {values.shape}, expected ({self.nnz},)")
        csr = sp.csr_array((values, self.csr.indices, self.csr.indptr), shape=self.shape)
        return InteractionMatrix(csr, self.timestamps, self.user_ids, self.item_ids)

    def union(self, other: InteractionMatrix) -> InteractionMatrix:
        """Binary matrix of the pairs present in either matrix (for exclusion masks)."""
        if other.shape != self.shape:
            raise DataError(f"cannot combine matrices of shapes {self.shape} and {other.shape}")
        both = (self.csr != 0).astype(np.float32) + (other.csr != 0).astype(np.float32)
        both = sp.csr_array(both)
        both.sum_duplicates()
        both.sort_indices()
        both.data[:] = 1.0
        return InteractionMatrix(both, None, self.user_ids, self.item_ids)

    def dense_rows(self, users: np.ndarray) -> np.ndarray:
        """Densifies the rows of `users`.

        Args:
          users: [B] int row indices.

        Returns:
          [B, n_items] float32 array. Memory is B x n_items, never n_users x n_items.
        """
        users = np.asarray(users, np.int64)
        out = np.zeros((len(users), self.n_items), np.float32)
        indptr, indices, data = self.csr.indptr, self.csr.indices, self.csr.data
        starts, ends = indptr[users], indptr[users + 1]
        lengths = ends - starts
        rows = np.repeat(np.arange(len(users)), lengths)
        # Position of every stored entry of the selected rows inside indices/data.
        first = np.cumsum(lengths) - lengths
        flat = np.arange(lengths.sum()) + np.repeat(starts - first, lengths)
        out[rows, indices[flat]] = data[flat]
        return out

    def __repr__(self) -> str:
        ts = ", timestamps" if self.timestamps is not None else ""
        return (
            f"InteractionMatrix(n_users={self.n_users}, n_items={self.n_items}, nnz={self.nnz}{ts})"
        )
