"""Per-user interaction sequences and the leave-one-out protocol of sequential recommenders.

:class:`SequenceDataset` stores every user's chronological item sequence in CSR-like form
(`offsets` into one flat `items` array). :meth:`SequenceDataset.leave_one_out` gives a
:class:`SequenceSplit`: the last item of every sequence is the test target, the second-to-last
the validation target, the rest the training sequence (the ADRec / DiffuRec / SASRec protocol).

Padding: :meth:`SequenceSplit.histories` left-pads histories with the value ``n_items`` (one past
the last item index), so a model can look histories up in an ``[n_items + 1, d]`` embedding table
whose last row is the padding embedding, and build its mask as ``history != n_items``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from diffrec_jax.data.interactions import InteractionLog, InteractionMatrix
from diffrec_jax.data.split import Split
from diffrec_jax.errors import ConfigError, DataError


def _readonly(a):
    if a is not None:
        a.setflags(write=False)
    return a


def _pair_keys(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    return users.astype(np.int64) * np.int64(n_items) + items


def _n_distinct(a: np.ndarray) -> int:
    """Number of distinct values (sort based: faster than np.unique's hashing on many values)."""
    s = np.sort(a)
    return int(len(s) > 0) + int(np.count_nonzero(s[1:] != s[:-1]))


def count_repeats(offsets: np.ndarray, items: np.ndarray, n_items: int) -> int:
    """Number of positions whose item already occurred earlier in the same sequence."""
    users = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    return len(items) - _n_distinct(_pair_keys(users, items, n_items))


@dataclasses.dataclass(frozen=True, eq=False)
class SequenceDataset:
    """Immutable chronological item sequences, one per user.

    Attributes:
      offsets: [n_users + 1] int64; user u's sequence is ``items[offsets[u]:offsets[u + 1]]``,
        oldest first.
      items: [total] int64 0-based contiguous item indices.
      n_items: size of the item index space (items are in [0, n_items)).
      user_ids: [n_users] raw id of every user index, or None when ids are the indices.
      item_ids: [n_items] raw id of every item index, or None when ids are the indices.
      timestamps: [total] float64 event times aligned with `items`, or None.
      source: where the sequences came from, for messages.
      history: the steps that produced the data, one line each.
    """

    offsets: np.ndarray
    items: np.ndarray
    n_items: int
    user_ids: np.ndarray | None = None
    item_ids: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    source: str = "<memory>"
    history: tuple[str, ...] = ()

    def __post_init__(self):
        offsets = np.asarray(self.offsets)
        items = np.asarray(self.items)
        if offsets.ndim != 1 or offsets.size < 1 or not np.issubdtype(offsets.dtype, np.integer):
            raise DataError(
                f"offsets must be a 1-D integer array of n_users + 1 entries, got "
                f"shape {offsets.shape} dtype {offsets.dtype}",
                path=self.source,
            )
        if items.ndim != 1 or (items.size and not np.issubdtype(items.dtype, np.integer)):
            raise DataError(
                f"items must be a 1-D integer array, got shape {items.shape} dtype {items.dtype}",
                path=self.source,
            )
        if offsets[0] != 0 or offsets[-1] != items.size or np.any(np.diff(offsets) < 0):
            raise DataError(
                f"offsets must start at 0, be non-decreasing and end at len(items)={items.size}",
                path=self.source,
            )
        if items.size and (items.min() < 0 or items.max() >= self.n_items):
            bad = int(np.flatnonzero((items < 0) | (items >= self.n_items))[0])
            raise DataError(
                f"item index {items[bad]} out of range; expected 0 <= index < "
                f"n_items={self.n_items}",
                path=self.source,
                row=bad,
            )
        n_users = offsets.size - 1
        for name, a, n in (
            ("user_ids", self.user_ids, n_users),
            ("item_ids", self.item_ids, self.n_items),
            ("timestamps", self.timestamps, items.size),
        ):
            if a is not None and len(a) != n:
                raise DataError(f"{name} has {len(a)} entries, expected {n}", path=self.source)
        object.__setattr__(self, "offsets", _readonly(offsets.astype(np.int64)))
        object.__setattr__(self, "items", _readonly(items.astype(np.int64)))
        object.__setattr__(self, "n_items", int(self.n_items))
        if self.timestamps is not None:
            object.__setattr__(
                self, "timestamps", _readonly(np.asarray(self.timestamps, np.float64))
            )
        for name in ("user_ids", "item_ids"):
            a = getattr(self, name)
            if a is not None:
                object.__setattr__(self, name, _readonly(np.asarray(a, np.int64)))

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_log(cls, log: InteractionLog) -> SequenceDataset:
        """Groups a log into per-user sequences.

        Sequences are ordered by timestamp, ties by file (row) order; without timestamps, by row
        order. Raw ids are remapped to contiguous indices in sorted raw-id order. Repeated items
        within a sequence are kept (and counted in the history).
        """
        if len(log) == 0:
            raise DataError(
                "the log has no rows; expected at least one interaction", path=log.source
            )
        user_ids, users = np.unique(log.users, return_inverse=True)
        item_ids, items = np.unique(log.items, return_inverse=True)
        rows = np.arange(len(log))
        if log.timestamps is not None:
            order = np.lexsort((rows, log.timestamps, users))
            how = "by timestamp (ties by row order)"
        else:
            order = np.lexsort((rows, users))
            how = "in row order"
        offsets = np.zeros(len(user_ids) + 1, np.int64)
        np.cumsum(np.bincount(users, minlength=len(user_ids)), out=offsets[1:])
        seq_items = items[order]
        ts = None if log.timestamps is None else log.timestamps[order]
        repeats = count_repeats(offsets, seq_items, len(item_ids))
        step = (
            f"grouped into sequences {how}: {len(user_ids)} users, {len(item_ids)} items, "
            f"{len(log)} events, {repeats} repeated (user, item) events kept"
        )
        return cls(
            offsets,
            seq_items,
            len(item_ids),
            user_ids,
            item_ids,
            ts,
            log.source,
            log.history + (step,),
        )

    # -- access -------------------------------------------------------------------------------

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    def __len__(self) -> int:
        return self.n_users

    def sequence(self, u: int) -> np.ndarray:
        """[length] int64 item indices of user u, oldest first."""
        if not 0 <= u < self.n_users:
            raise IndexError(f"user index {u} out of range [0, {self.n_users})")
        return self.items[self.offsets[u] : self.offsets[u + 1]]

    def lengths(self) -> np.ndarray:
        """[n_users] int64 sequence lengths."""
        return np.diff(self.offsets)

    def user_of_event(self) -> np.ndarray:
        """[total] int64 user index of every entry of `items`."""
        return np.repeat(np.arange(self.n_users, dtype=np.int64), self.lengths())

    def _raw_user(self, u: int) -> int:
        return int(u if self.user_ids is None else self.user_ids[u])

    def select_users(self, keep: np.ndarray, step: str) -> SequenceDataset:
        """The sequences of the users where `keep` ([n_users] bool) is True; items keep their
        indices (n_items is unchanged)."""
        keep = np.asarray(keep, bool)
        lengths = self.lengths()[keep]
        offsets = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        event_keep = np.repeat(keep, self.lengths())
        ts = None if self.timestamps is None else self.timestamps[event_keep]
        uids = None if self.user_ids is None else self.user_ids[keep]
        return SequenceDataset(
            offsets,
            self.items[event_keep],
            self.n_items,
            uids,
            self.item_ids,
            ts,
            self.source,
            self.history + (step,),
        )

    def drop_last(self, k: int, step: str) -> SequenceDataset:
        """Every sequence without its last k items (sequences must have at least k)."""
        lengths = self.lengths()
        if np.any(lengths < k):
            u = int(np.flatnonzero(lengths < k)[0])
            raise DataError(
                f"user {self._raw_user(u)} has {lengths[u]} items, cannot drop {k}",
                path=self.source,
            )
        keep = np.ones(len(self.items), bool)
        for j in range(1, k + 1):
            keep[self.offsets[1:] - j] = False
        offsets = self.offsets - k * np.arange(self.n_users + 1)
        ts = None if self.timestamps is None else self.timestamps[keep]
        return SequenceDataset(
            offsets,
            self.items[keep],
            self.n_items,
            self.user_ids,
            self.item_ids,
            ts,
            self.source,
            self.history + (step,),
        )

    # -- protocol -----------------------------------------------------------------------------

    def leave_one_out(
        self, *, short_users: str = "raise", name: str | None = None
    ) -> SequenceSplit:
        """Leave-one-out split: last item -> test, second-to-last -> valid, rest -> train.

        Args:
          short_users: what to do with users that have fewer than 3 items: "raise" (default,
            a DataError naming the first such user) or "drop" (remove them; the history says
            how many).
          name: the split name; default the source's file or folder name.
        """
        if short_users not in ("raise", "drop"):
            raise ConfigError(f"short_users={short_users!r}; expected 'raise' or 'drop'")
        data = self
        lengths = self.lengths()
        short = lengths < 3
        if short.any():
            if short_users == "raise":
                u = int(np.flatnonzero(short)[0])
                raise DataError(
                    f"user {self._raw_user(u)} (index {u}) has {lengths[u]} items; "
                    f"leave-one-out needs at least 3 ({int(short.sum())} users are that short; "
                    "pass short_users='drop' to remove them)",
                    path=self.source,
                )
            data = self.select_users(
                ~short,
                f"dropped {int(short.sum())} users with fewer "
                f"than 3 items ({int(lengths[short].sum())} events)",
            )
            if data.n_users == 0:
                raise DataError("no user has 3 or more items", path=self.source)
        ends = data.offsets[1:]
        valid_targets = data.items[ends - 2].copy()
        test_targets = data.items[ends - 1].copy()
        train = data.drop_last(2, "leave-one-out train: every sequence without its last 2 items")
        step = (
            f"leave-one-out: {data.n_users} users, last item -> test, second-to-last -> "
            f"valid, {len(train.items)} train events"
        )
        if name is None:
            name = _name_from_source(self.source)
        return SequenceSplit(
            data,
            train,
            _readonly(valid_targets),
            _readonly(test_targets),
            name,
            data.history + (step,),
        )


def _name_from_source(source: str) -> str:
    p = Path(source)
    if source.startswith("<"):
        return "sequences"
    return p.parent.name if p.stem == "sequences" and p.parent.name else p.stem


def left_padded(data: SequenceDataset, max_len: int, *, drop_last: int = 0) -> np.ndarray:
    """The most recent `max_len` items of every sequence, left-padded (model input histories).

    Args:
      data: the sequences.
      max_len: history length L.
      drop_last: leave out the last `drop_last` items of every sequence first.

    Returns:
      [n_users, max_len] int32, oldest first, padded with ``data.n_items``.

    Raises:
      ConfigError: max_len < 1, or `drop_last` longer than a sequence.
    """
    if int(max_len) < 1:
        raise ConfigError(f"max_len={max_len}; expected a positive integer")
    ends = data.offsets[1:] - drop_last
    if np.any(ends < data.offsets[:-1]):
        raise ConfigError(f"drop_last={drop_last} is longer than the shortest sequence")
    starts = np.maximum(data.offsets[:-1], ends - max_len)
    lengths = ends - starts
    out = np.full((data.n_users, max_len), data.n_items, np.int32)
    rows = np.repeat(np.arange(data.n_users), lengths)
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cols = max_len - np.repeat(lengths, lengths) + within
    out[rows, cols] = data.items[np.repeat(starts, lengths) + within]
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class SequenceSplit:
    """A leave-one-out split of sequences.

    Attributes:
      sequences: the full sequences of the kept users.
      train: the training sequences, ``seq[:-2]`` for every user.
      valid_targets: [n_users] int64 second-to-last item of every user.
      test_targets: [n_users] int64 last item of every user.
      name: a short name for tables.
      history: the steps that produced it.
    """

    sequences: SequenceDataset
    train: SequenceDataset
    valid_targets: np.ndarray
    test_targets: np.ndarray
    name: str = "sequences"
    history: tuple[str, ...] = ()

    @property
    def n_users(self) -> int:
        return self.sequences.n_users

    @property
    def n_items(self) -> int:
        return self.sequences.n_items

    @property
    def pad_value(self) -> int:
        """The padding value of :meth:`histories`: ``n_items``."""
        return self.sequences.n_items

    def histories(self, part: str, max_len: int) -> np.ndarray:
        """Left-padded model input histories.

        Args:
          part: "valid" (history ``seq[:-2]``, the train sequence, to predict the valid target)
            or "test" (history ``seq[:-1]``, train plus the valid item, to predict the test
            target).
          max_len: keep the most recent `max_len` items.

        Returns:
          [n_users, max_len] int32, oldest first, left-padded with `pad_value` (= n_items).
        """
        if part not in ("valid", "test"):
            raise ConfigError(f"part={part!r}; expected 'valid' or 'test'")
        return left_padded(self.sequences, max_len, drop_last=2 if part == "valid" else 1)

    def to_split(self, name: str | None = None) -> Split:
        """The interaction :class:`Split` for user-vector models.

        train holds every (user, item) pair of ``seq[:-2]`` once (a repeated item keeps the time
        of its last occurrence), valid the second-to-last item and test the last item of every
        user. A valid or test target that the user already had in train stays in valid/test;
        an evaluator that masks train items cannot hit it. Both counts go into the history.
        """
        train_seq = self.train
        users = train_seq.user_of_event()
        items = train_seq.items
        pos = np.arange(len(items))
        order = np.lexsort((pos, items, users))
        su, si = users[order], items[order]
        last = np.ones(len(order), bool)
        last[:-1] = (su[1:] != su[:-1]) | (si[1:] != si[:-1])
        keep = order[last]
        n_repeats = len(items) - len(keep)
        shape = (self.n_users, self.n_items)
        seq = self.sequences
        ts = None if train_seq.timestamps is None else train_seq.timestamps[keep]
        train = InteractionMatrix.from_arrays(
            users[keep],
            items[keep],
            shape=shape,
            timestamps=ts,
            user_ids=seq.user_ids,
            item_ids=seq.item_ids,
            source=seq.source,
        )
        all_users = np.arange(self.n_users)
        ends = seq.offsets[1:]
        parts = {}
        for part, targets, shift in (
            ("valid", self.valid_targets, 2),
            ("test", self.test_targets, 1),
        ):
            t = None if seq.timestamps is None else seq.timestamps[ends - shift]
            parts[part] = InteractionMatrix.from_arrays(
                all_users,
                targets,
                shape=shape,
                timestamps=t,
                user_ids=seq.user_ids,
                item_ids=seq.item_ids,
                source=seq.source,
            )
        train_keys = _pair_keys(users[keep], items[keep], self.n_items)
        in_train = {
            p: int(np.isin(_pair_keys(all_users, t, self.n_items), train_keys).sum())
            for p, t in (("valid", self.valid_targets), ("test", self.test_targets))
        }
        test_is_valid = int(np.sum(self.valid_targets == self.test_targets))
        step = (
            f"to interaction split: train {train.nnz} pairs ({n_repeats} repeated train "
            f"events kept once), valid {self.n_users}, test {self.n_users}; "
            f"{in_train['valid']} valid and {in_train['test']} test targets already in the "
            f"user's train items, {test_is_valid} test targets equal the valid target"
        )
        return Split(
            train,
            parts["valid"],
            parts["test"],
            name=name or self.name,
            history=self.history + (step,),
        )
