"""Splitting functions: determinism, partition, rounding rule, temporal order."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import entries, pairs, random_matrix

from diffrec_jax.data import (
    InteractionMatrix,
    global_temporal,
    holdout_sizes,
    leave_one_out,
    random_holdout,
    temporal_holdout,
)
from diffrec_jax.errors import ConfigError, DataError


def assert_partition(m: InteractionMatrix, split) -> None:
    """train, valid, test have m's shape and ids and partition its entries exactly."""
    parts = [split.train, split.valid, split.test]
    for p in parts:
        assert p.shape == m.shape
        assert p.user_ids is m.user_ids and p.item_ids is m.item_ids
    keys = [set(entries(p)) for p in parts]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    merged = {}
    for p in parts:
        merged.update(entries(p))
    assert merged == entries(m)  # values and timestamps follow their entries


def per_user(m: InteractionMatrix, fn) -> list:
    return [
        fn(
            m.csr.indices[m.csr.indptr[u] : m.csr.indptr[u + 1]],
            None if m.timestamps is None else m.timestamps[m.csr.indptr[u] : m.csr.indptr[u + 1]],
        )
        for u in range(m.n_users)
    ]


@pytest.mark.parametrize(
    "ratios, n, expected",
    [
        # (n_train, n_valid, n_test) worked out by hand from the documented rule:
        # n_test = round_half_up(n r_test), n_valid = round_half_up(n r_valid), train >= 1.
        (
            (0.7, 0.1, 0.2),
            [0, 1, 2, 3, 5, 10, 13],
            [(0, 0, 0), (1, 0, 0), (2, 0, 0), (2, 0, 1), (3, 1, 1), (7, 1, 2), (9, 1, 3)],
        ),
        (
            (0.8, 0.1, 0.1),
            [4, 5, 14, 15, 25],
            [(4, 0, 0), (3, 1, 1), (12, 1, 1), (11, 2, 2), (19, 3, 3)],
        ),
        ((0.2, 0.4, 0.4), [1, 2, 3, 4], [(1, 0, 0), (1, 0, 1), (1, 1, 1), (1, 1, 2)]),
    ],
)
def test_holdout_sizes_rounding_rule(ratios, n, expected):
    sizes = np.stack(holdout_sizes(np.array(n), ratios), axis=1)
    assert sizes.tolist() == [list(e) for e in expected]


@pytest.mark.parametrize(
    "ratios",
    [
        (0.5, 0.5, 0.5),
        (1.0, 0.0, 0.0),
        (0.8, 0.2),
        (0.9, -0.1, 0.2),
        "abc",
        (0.8, float("nan"), 0.1),
    ],
)
@pytest.mark.parametrize("fn", [random_holdout, temporal_holdout, global_temporal])
def test_ratios_are_validated(fn, ratios):
    with pytest.raises(ConfigError, match="ratios"):
        fn(random_matrix(0), ratios)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_holdout(seed):
    m = random_matrix(seed)
    ratios = (0.6, 0.15, 0.25)
    split = random_holdout(m, ratios, seed=seed, name="toy", history=("made up",))
    assert_partition(m, split)
    n_train, n_valid, n_test = holdout_sizes(m.user_lengths(), ratios)
    np.testing.assert_array_equal(split.train.user_lengths(), n_train)
    np.testing.assert_array_equal(split.valid.user_lengths(), n_valid)
    np.testing.assert_array_equal(split.test.user_lengths(), n_test)
    assert split.name == "toy"
    assert split.history[0] == "made up" and "random_holdout" in split.history[-1]
    again = random_holdout(m, ratios, seed=seed)
    assert all(
        pairs(getattr(again, p)) == pairs(getattr(split, p)) for p in ("train", "valid", "test")
    )
    other = random_holdout(m, ratios, seed=seed + 10)
    assert pairs(other.test) != pairs(split.test)


def test_random_holdout_is_roughly_uniform_over_items():
    # Every entry should land in test with frequency about n_test / n over many seeds.
    m = random_matrix(3, n_users=5, n_items=12, density=0.6)
    hits = np.zeros(m.nnz)
    index = {k: j for j, k in enumerate(entries(m))}
    for seed in range(300):
        for k in pairs(random_holdout(m, (0.6, 0.2, 0.2), seed=seed).test):
            hits[index[k]] += 1
    users, _, _ = m.to_arrays()
    expected = (holdout_sizes(m.user_lengths(), (0.6, 0.2, 0.2))[2] / m.user_lengths())[users]
    np.testing.assert_allclose(hits / 300, expected, atol=0.12)


@pytest.mark.parametrize("ties", [False, True])
def test_temporal_holdout_order(ties):
    m = random_matrix(4, timestamps=True, ties=ties)
    ratios = (0.5, 0.2, 0.3)
    split = temporal_holdout(m, ratios)
    assert_partition(m, split)
    n_train, n_valid, n_test = holdout_sizes(m.user_lengths(), ratios)
    np.testing.assert_array_equal(split.test.user_lengths(), n_test)
    np.testing.assert_array_equal(split.valid.user_lengths(), n_valid)

    def keys(part):  # (timestamp, item) per user, the documented order
        return per_user(
            part, lambda items, ts: sorted(zip(ts.tolist(), items.tolist(), strict=True))
        )

    for tr, va, te in zip(keys(split.train), keys(split.valid), keys(split.test), strict=True):
        ordered = [k for k in (tr, va, te) if k]
        for a, b in zip(ordered, ordered[1:], strict=False):
            assert max(a) < min(b)


def test_temporal_ties_broken_by_item_index():
    m = InteractionMatrix.from_arrays([0] * 5, [4, 0, 3, 1, 2], timestamps=[7.0] * 5)
    split = temporal_holdout(m, (0.6, 0.2, 0.2))
    assert pairs(split.test) == {(0, 4)} and pairs(split.valid) == {(0, 3)}


def test_global_temporal():
    m = random_matrix(5, ties=True)
    ratios = (0.7, 0.1, 0.2)
    split = global_temporal(m, ratios)
    assert_partition(m, split)
    assert split.test.nnz == int(np.floor(m.nnz * 0.2 + 0.5))
    assert split.valid.nnz == int(np.floor(m.nnz * 0.1 + 0.5))
    t = [p.timestamps for p in (split.train, split.valid, split.test)]
    assert t[0].max() <= t[1].min() and t[1].max() <= t[2].min()
    assert "global_temporal" in split.history[-1]


@pytest.mark.parametrize("fn", [temporal_holdout, global_temporal, leave_one_out])
def test_time_splits_need_timestamps(fn):
    with pytest.raises(DataError, match="timestamps"):
        fn(random_matrix(0, timestamps=False))


def test_leave_one_out():
    m = random_matrix(6, density=0.4)
    assert m.user_lengths().min() >= 3
    split = leave_one_out(m)
    assert_partition(m, split)
    assert np.all(split.test.user_lengths() == 1) and np.all(split.valid.user_lengths() == 1)
    order = per_user(m, lambda items, ts: sorted(zip(ts.tolist(), items.tolist(), strict=True)))
    test_items = per_user(split.test, lambda items, ts: items.tolist())
    valid_items = per_user(split.valid, lambda items, ts: items.tolist())
    for seq, te, va in zip(order, test_items, valid_items, strict=True):
        assert te == [seq[-1][1]] and va == [seq[-2][1]]


def test_leave_one_out_short_users():
    users = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    items = [0, 1, 2, 0, 1, 0, 1, 2, 3]
    ts = np.arange(9.0)
    m = InteractionMatrix.from_arrays(users, items, timestamps=ts, user_ids=np.array([7, 8, 9]))
    with pytest.raises(DataError, match=r"user 8 \(index 1\) has 2 interactions"):
        leave_one_out(m)
    split = leave_one_out(m, short_users="train")
    assert_partition(m, split)
    assert pairs(split.train) & {(1, 0), (1, 1)} == {(1, 0), (1, 1)}
    assert split.valid.user_lengths().tolist() == [1, 0, 1]
    assert "1 users with fewer than 3" in split.history[-1]
    with pytest.raises(ConfigError, match="short_users"):
        leave_one_out(m, short_users="drop")
