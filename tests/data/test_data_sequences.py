"""Sequences: construction, leave-one-out, padded histories, conversion to a Split."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import entries, pairs

from diffrec_jax.data import InteractionLog, SequenceDataset
from diffrec_jax.errors import ConfigError, DataError


def make(seqs: list[list[int]], n_items: int, **kw) -> SequenceDataset:
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
    items = np.array([i for s in seqs for i in s], np.int64)
    return SequenceDataset(offsets, items, n_items, **kw)


def random_sequences(seed: int, n_users: int = 30, n_items: int = 25) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n_items, rng.integers(3, 15)).tolist() for _ in range(n_users)]


def test_from_log_orders_by_timestamp_then_row():
    log = InteractionLog(
        np.array([5, 1, 5, 5, 1, 5]),
        np.array([10, 20, 30, 40, 50, 60]),
        None,
        np.array([3.0, 9.0, 1.0, 3.0, 2.0, 0.0]),
        "<t>",
    )
    data = SequenceDataset.from_log(log)
    raw = [data.item_ids[data.sequence(u)].tolist() for u in range(data.n_users)]
    assert data.user_ids.tolist() == [1, 5]
    assert raw == [[50, 20], [60, 30, 10, 40]]  # items 10 and 40 tie at t=3: row order
    np.testing.assert_array_equal(data.timestamps, [2.0, 9.0, 0.0, 1.0, 3.0, 3.0])
    no_time = SequenceDataset.from_log(InteractionLog(log.users, log.items))
    assert [no_time.item_ids[no_time.sequence(u)].tolist() for u in range(2)] == [
        [20, 50],
        [10, 30, 40, 60],
    ]


def test_constructor_validates():
    with pytest.raises(DataError, match="out of range"):
        make([[0, 5]], n_items=5)
    with pytest.raises(DataError, match="offsets"):
        SequenceDataset(np.array([0, 3]), np.array([1, 2]), 4)
    with pytest.raises(DataError, match="user_ids"):
        make([[0, 1]], n_items=3, user_ids=np.array([1, 2]))
    data = make([[0, 1, 2]], n_items=3)
    with pytest.raises(ValueError):
        data.items[0] = 2  # immutable


@pytest.mark.parametrize("seed", [0, 1])
def test_leave_one_out_targets_and_train(seed):
    seqs = random_sequences(seed)
    split = make(seqs, 25).leave_one_out(name="toy")
    assert split.name == "toy" and split.n_users == len(seqs)
    assert split.valid_targets.tolist() == [s[-2] for s in seqs]
    assert split.test_targets.tolist() == [s[-1] for s in seqs]
    assert [split.train.sequence(u).tolist() for u in range(len(seqs))] == [s[:-2] for s in seqs]


def test_leave_one_out_short_users():
    seqs = [[0, 1, 2], [3, 4], [1, 2, 3, 4], [2]]
    data = make(seqs, 5, user_ids=np.array([10, 11, 12, 13]))
    with pytest.raises(DataError, match=r"user 11 \(index 1\) has 2 items"):
        data.leave_one_out()
    split = data.leave_one_out(short_users="drop")
    assert split.sequences.user_ids.tolist() == [10, 12]
    assert split.test_targets.tolist() == [2, 4]
    assert split.n_items == 5
    assert any("dropped 2 users" in h for h in split.history)
    with pytest.raises(ConfigError):
        data.leave_one_out(short_users="train")


def reference_histories(seqs, part, max_len, pad):
    out = []
    for s in seqs:
        h = s[:-2] if part == "valid" else s[:-1]
        h = h[-max_len:]
        out.append([pad] * (max_len - len(h)) + h)
    return np.array(out)


@pytest.mark.parametrize("part", ["valid", "test"])
@pytest.mark.parametrize("max_len", [1, 4, 20])
def test_histories_match_python_reference(part, max_len):
    seqs = random_sequences(3)
    split = make(seqs, 25).leave_one_out()
    got = split.histories(part, max_len)
    assert got.shape == (len(seqs), max_len) and got.dtype == np.int32
    assert split.pad_value == 25
    np.testing.assert_array_equal(got, reference_histories(seqs, part, max_len, 25))


def test_histories_arguments():
    split = make(random_sequences(0), 25).leave_one_out()
    with pytest.raises(ConfigError, match="part"):
        split.histories("train", 5)
    with pytest.raises(ConfigError, match="max_len"):
        split.histories("test", 0)


def test_to_split_with_repeats():
    # user 0 repeats item 1 in train and its valid target 2 is also a train item
    seqs = [[1, 2, 1, 3, 2, 4], [0, 0, 1, 1]]
    ts = np.arange(10, dtype=np.float64)
    data = make(
        seqs,
        5,
        timestamps=ts,
        user_ids=np.array([7, 9]),
        item_ids=np.array([100, 101, 102, 103, 104]),
    )
    split = data.leave_one_out(name="rep").to_split()
    assert split.name == "rep" and split.train.shape == (2, 5)
    assert pairs(split.train) == {(0, 1), (0, 2), (0, 3), (1, 0)}
    assert pairs(split.valid) == {(0, 2), (1, 1)}
    assert pairs(split.test) == {(0, 4), (1, 1)}
    # a repeated train item keeps the time of its last occurrence
    assert entries(split.train)[(0, 1)] == (1.0, 2.0)
    assert entries(split.train)[(1, 0)] == (1.0, 7.0)
    assert entries(split.valid)[(0, 2)] == (1.0, 4.0)
    assert split.train.user_ids.tolist() == [7, 9]
    last = split.history[-1]
    assert "2 repeated train events" in last
    assert "1 valid and 0 test targets already in the user's train items" in last
    assert "1 test targets equal the valid target" in last


def test_to_split_matches_sequences_without_repeats():
    rng = np.random.default_rng(5)
    seqs = [rng.permutation(30)[: rng.integers(3, 12)].tolist() for _ in range(20)]
    split = make(seqs, 30).leave_one_out().to_split()
    expected_train = {(u, i) for u, s in enumerate(seqs) for i in s[:-2]}
    assert pairs(split.train) == expected_train
    assert pairs(split.valid) == {(u, s[-2]) for u, s in enumerate(seqs)}
    assert pairs(split.test) == {(u, s[-1]) for u, s in enumerate(seqs)}
