"""Preprocessing: k-core against a naive loop, threshold, dedup policies, to_matrix."""

from __future__ import annotations

import re

import numpy as np
import pytest
from data_fixtures import entries, shared

from diffrec_jax.data import (
    InteractionLog,
    binarize,
    deduplicate,
    kcore,
    load_recbole_inter,
    to_matrix,
)
from diffrec_jax.errors import ConfigError, DataError


def dropped(step: str) -> tuple[int, int, int]:
    """(rows, users, items) dropped, parsed from a history line."""
    m = re.search(r"dropped (\d+) of \d+ rows, (\d+) of \d+ users, (\d+) of \d+ items", step)
    assert m, step
    return tuple(int(x) for x in m.groups())


def random_log(
    seed: int, n: int = 400, n_users: int = 40, n_items: int = 30, timestamps: bool = True
) -> InteractionLog:
    rng = np.random.default_rng(seed)
    # Skewed ids so that k-core has something to remove.
    users = (rng.pareto(1.0, n) * 3).astype(np.int64) % n_users + 100
    items = (rng.pareto(1.0, n) * 3).astype(np.int64) % n_items
    ratings = rng.integers(1, 6, n).astype(np.float64)
    ts = rng.integers(0, 50, n).astype(np.float64) if timestamps else None
    return InteractionLog(users, items, ratings, ts, "<test>")


def naive_kcore(users, items, user_k, item_k) -> set[int]:
    """Row indices kept by alternately removing short users and short items until stable."""
    alive = set(range(len(users)))
    while True:
        changed = False
        for ids, k in ((users, user_k), (items, item_k)):
            counts: dict[int, int] = {}
            for r in alive:
                counts[ids[r]] = counts.get(ids[r], 0) + 1
            remove = {r for r in alive if counts[ids[r]] < k}
            if remove:
                alive -= remove
                changed = True
        if not changed:
            return alive


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("user_k, item_k", [(2, 2), (3, 5), (5, 1), (0, 4), (10, 10)])
def test_kcore_matches_naive_loop(seed, user_k, item_k):
    log = random_log(seed)
    out = kcore(log, user_k, item_k)
    expected = naive_kcore(log.users.tolist(), log.items.tolist(), user_k, item_k)
    keep = np.zeros(len(log), bool)
    keep[sorted(expected)] = True
    np.testing.assert_array_equal(out.users, log.users[keep])
    np.testing.assert_array_equal(out.items, log.items[keep])
    np.testing.assert_array_equal(out.ratings, log.ratings[keep])
    if len(out):
        assert min(np.unique(out.users, return_counts=True)[1]) >= user_k
        assert min(np.unique(out.items, return_counts=True)[1]) >= item_k
    n_users = len(set(log.users.tolist()))
    n_items = len(set(log.items.tolist()))
    assert dropped(out.history[-1]) == (
        len(log) - len(out),
        n_users - len(set(out.users.tolist())),
        n_items - len(set(out.items.tolist())),
    )


def test_kcore_rejects_bad_thresholds():
    with pytest.raises(ConfigError, match="user_k"):
        kcore(random_log(0), -1, 2)
    with pytest.raises(ConfigError, match="item_k"):
        kcore(random_log(0), 2, 2.5)


def test_binarize_threshold_and_counts():
    log = InteractionLog(
        np.array([1, 1, 2, 3, 3]),
        np.array([5, 6, 5, 7, 5]),
        np.array([4.0, 3.0, 5.0, 1.0, 4.5]),
        None,
        "<t>",
    )
    out = binarize(log, 4)
    assert out.users.tolist() == [1, 2, 3]
    assert out.items.tolist() == [5, 5, 5]
    assert out.ratings.tolist() == [4.0, 5.0, 4.5]
    assert dropped(out.history[-1]) == (2, 0, 2)  # items 6 and 7 disappear
    assert "rating >= 4" in out.history[-1]
    with pytest.raises(DataError, match="no rating"):
        binarize(InteractionLog(np.array([1]), np.array([2])), 4)


# rows: (user, item, rating, timestamp)
DUP_ROWS = [
    (1, 1, 1.0, 5.0),
    (1, 2, 2.0, 1.0),
    (1, 1, 3.0, 3.0),
    (2, 1, 4.0, 9.0),
    (1, 1, 5.0, 5.0),
    (2, 1, 6.0, 2.0),
]


def dup_log(with_time: bool) -> InteractionLog:
    u, i, r, t = (np.array(c) for c in zip(*DUP_ROWS, strict=True))
    return InteractionLog(
        u.astype(np.int64), i.astype(np.int64), r, t if with_time else None, "dups.csv"
    )


@pytest.mark.parametrize(
    "with_time, policy, kept_ratings",
    [
        # by timestamp: (1,1) times 5, 3, 5 -> first = t 3 (rating 3), last = the later t 5 row (5)
        (True, "first", [2.0, 3.0, 6.0]),
        (True, "last", [2.0, 4.0, 5.0]),
        # by row order
        (False, "first", [1.0, 2.0, 4.0]),
        (False, "last", [2.0, 5.0, 6.0]),
    ],
)
def test_deduplicate_policies(with_time, policy, kept_ratings):
    out = deduplicate(dup_log(with_time), policy)
    assert sorted(out.ratings.tolist()) == kept_ratings
    keys = list(zip(out.users.tolist(), out.items.tolist(), strict=True))
    assert len(set(keys)) == len(keys) == 3
    # Kept rows stay in log order.
    rows = [next(k for k, r in enumerate(DUP_ROWS) if r[2] == x) for x in out.ratings]
    assert rows == sorted(rows)
    assert dropped(out.history[-1]) == (3, 0, 0)


def test_deduplicate_error_names_first_repeat():
    with pytest.raises(DataError) as info:
        deduplicate(dup_log(True), "error")
    assert "dups.csv" in str(info.value) and info.value.row == 2
    assert "repeats row 0" in str(info.value)
    clean = deduplicate(dup_log(True), "last")
    assert len(deduplicate(clean, "error")) == 3
    with pytest.raises(ConfigError, match="policy"):
        deduplicate(clean, "keep")


def test_to_matrix_remaps_ids_and_carries_timestamps():
    log = InteractionLog(
        np.array([30, 10, 30, 20]),
        np.array([7, 7, 100, 3]),
        np.array([1.0, 2.0, 3.0, 4.0]),
        np.array([10.0, 20.0, 30.0, 40.0]),
        "<t>",
    )
    m = to_matrix(log)
    assert m.user_ids.tolist() == [10, 20, 30]
    assert m.item_ids.tolist() == [3, 7, 100]
    assert entries(m) == {
        (2, 1): (1.0, 10.0),
        (0, 1): (1.0, 20.0),
        (2, 2): (1.0, 30.0),
        (1, 0): (1.0, 40.0),
    }
    rated = to_matrix(log, use_ratings=True)
    assert {k: v[0] for k, v in entries(rated).items()} == {
        (2, 1): 1.0,
        (0, 1): 2.0,
        (2, 2): 3.0,
        (1, 0): 4.0,
    }


def test_to_matrix_errors():
    with pytest.raises(DataError, match="duplicate"):
        to_matrix(dup_log(False))
    with pytest.raises(DataError, match="no ratings"):
        to_matrix(InteractionLog(np.array([1]), np.array([2])), use_ratings=True)
    with pytest.raises(DataError, match="no rows"):
        to_matrix(InteractionLog(np.zeros(0, np.int64), np.zeros(0, np.int64)))


def test_ml100k_threshold_and_5core_gives_the_adrec_ml100k_counts():
    # ADRec's ML-100K sequences (938 users, 1,008 items, 54,413 interactions per the data
    # README) are ratings >= 4 with a 5-core.
    log = load_recbole_inter(shared("ml-100k/ml-100k.inter"))
    out = kcore(deduplicate(binarize(log, 4), "error"), 5, 5)
    m = to_matrix(out)
    assert (m.n_users, m.n_items, m.nnz) == (938, 1008, 54413)
    assert len(out.history) == 4
