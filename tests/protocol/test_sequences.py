"""The sequential protocol's data pieces: left padding, training examples, batches."""

from __future__ import annotations

import numpy as np
import pytest

from diffrec_jax.data.sequences import SequenceDataset
from diffrec_jax.errors import ConfigError
from diffrec_jax.protocol import (
    SeqBatch,
    SeqExamples,
    SeqFitData,
    left_pad,
    training_examples,
)

P = 7  # padding value = n_items of the tiny dataset


def _dataset(seqs, n_items):
    offsets = np.r_[0, np.cumsum([len(s) for s in seqs])]
    items = np.concatenate([np.asarray(s, np.int64) for s in seqs]) if seqs else []
    return SequenceDataset(offsets, np.asarray(items, np.int64), n_items)


# user 0: long, 1: two items, 2: one item (no example), 3: three items
TINY = [[0, 1, 2, 3, 4], [5, 6], [1], [2, 0, 4]]


def test_left_pad_keeps_the_most_recent_items():
    data = _dataset(TINY, P)
    want = [[2, 3, 4], [P, 5, 6], [P, P, 1], [2, 0, 4]]
    got = left_pad(data, 3)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(
        left_pad(data, 6),
        [[P, 0, 1, 2, 3, 4], [P, P, P, P, 5, 6], [P] * 5 + [1], [P] * 3 + [2, 0, 4]],
    )


def test_left_pad_drop_last():
    data = _dataset(TINY, P)
    np.testing.assert_array_equal(
        left_pad(data, 3, drop_last=1), [[1, 2, 3], [P, P, 5], [P, P, P], [P, 2, 0]]
    )
    with pytest.raises(ConfigError, match="drop_last=2"):
        left_pad(data, 3, drop_last=2)  # user 2 has one item
    with pytest.raises(ConfigError, match="max_len=0"):
        left_pad(data, 0)


def test_sequence_examples_by_hand():
    ex = training_examples(_dataset(TINY, P), 3, "sequence")
    assert isinstance(ex, SeqExamples) and ex.n_items == P and ex.n_examples == 3
    np.testing.assert_array_equal(ex.users, [0, 1, 3])  # user 2 (one item) gives nothing
    # history = seq[:-1][-3:], targets = seq[1:][-3:], pad where the history is padding
    np.testing.assert_array_equal(ex.history, [[1, 2, 3], [P, P, 5], [P, 2, 0]])
    np.testing.assert_array_equal(ex.targets, [[2, 3, 4], [P, P, 6], [P, 0, 4]])
    for a in (ex.users, ex.history, ex.targets):
        assert a.dtype == np.int32


def test_sequence_examples_longer_than_the_sequences():
    ex = training_examples(_dataset(TINY, P), 5, "sequence")
    np.testing.assert_array_equal(ex.history, [[P, 0, 1, 2, 3], [P] * 4 + [5], [P] * 3 + [2, 0]])
    np.testing.assert_array_equal(ex.targets, [[P, 1, 2, 3, 4], [P] * 4 + [6], [P] * 3 + [0, 4]])


def test_prefix_examples_by_hand():
    ex = training_examples(_dataset(TINY, P), 3, "prefix")
    np.testing.assert_array_equal(ex.users, [0, 0, 0, 0, 1, 3, 3])
    np.testing.assert_array_equal(
        ex.history,
        [[P, P, 0], [P, 0, 1], [0, 1, 2], [1, 2, 3], [P, P, 5], [P, P, 2], [P, 2, 0]],
    )
    np.testing.assert_array_equal(ex.targets, [[1], [2], [3], [4], [6], [0], [4]])
    assert ex.targets.shape == (7, 1) and ex.history.dtype == np.int32


def test_unknown_example_kind():
    with pytest.raises(ConfigError, match="examples='tokens'"):
        training_examples(_dataset(TINY, P), 3, "tokens")


def _random_dataset(seed, n_users=40, n_items=30):
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(0, n_items, rng.integers(0, 12)) for _ in range(n_users)]
    return _dataset(seqs, n_items), seqs


@pytest.mark.parametrize("max_len", [1, 4, 20])
def test_examples_against_a_python_loop(max_len):
    data, seqs = _random_dataset(max_len)
    pad = data.n_items

    def padded(items):
        items = list(items)[-max_len:]
        return [pad] * (max_len - len(items)) + items

    np.testing.assert_array_equal(left_pad(data, max_len), [padded(s) for s in seqs])
    ex = training_examples(data, max_len, "sequence")
    keep = [u for u, s in enumerate(seqs) if len(s) >= 2]
    np.testing.assert_array_equal(ex.users, keep)
    np.testing.assert_array_equal(ex.history, [padded(seqs[u][:-1]) for u in keep])
    np.testing.assert_array_equal(ex.targets, [padded(seqs[u][1:]) for u in keep])
    pre = training_examples(data, max_len, "prefix")
    want = [(u, padded(s[:i]), s[i]) for u, s in enumerate(seqs) for i in range(1, len(s))]
    np.testing.assert_array_equal(pre.users, [w[0] for w in want])
    np.testing.assert_array_equal(pre.history, [w[1] for w in want])
    np.testing.assert_array_equal(pre.targets[:, 0], [w[2] for w in want])


def test_no_examples_from_short_sequences():
    data = _dataset([[3], [], [1]], 5)
    for kind in ("sequence", "prefix"):
        ex = training_examples(data, 4, kind)
        assert ex.n_examples == 0 and ex.history.shape == (0, 4)


def test_batch_gathers_the_examples():
    ex = training_examples(_dataset(TINY, P), 3, "prefix")
    idx = np.array([6, 0, 0], np.int32)
    w = np.array([1.0, 1.0, 0.0], np.float32)
    b = ex.batch(idx, w)
    assert isinstance(b, SeqBatch)
    np.testing.assert_array_equal(b.users, [3, 0, 0])
    np.testing.assert_array_equal(b.history, ex.history[idx])
    np.testing.assert_array_equal(b.targets, [[4], [1], [1]])
    np.testing.assert_array_equal(b.weights, w)


def test_fit_data_from_split_has_no_test_targets():
    data = _dataset([[0, 1, 2, 3], [4, 3, 2]], 5)
    split = data.leave_one_out()
    fit = SeqFitData.from_split(split)
    assert fit.n_items == 5
    np.testing.assert_array_equal(fit.valid_targets, [2, 3])
    np.testing.assert_array_equal(left_pad(fit.train, 3), [[5, 0, 1], [5, 5, 4]])
    np.testing.assert_array_equal(left_pad(fit.train, 3), split.histories("valid", 3))
