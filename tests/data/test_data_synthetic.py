"""Synthetic generators: determinism, properties, and structure a model can learn."""

from __future__ import annotations

import numpy as np
import pytest

from diffrec_jax.data import random_holdout, synthetic_log, synthetic_sequences, to_matrix
from diffrec_jax.errors import ConfigError

SMALL = dict(n_users=200, n_items=120, mean_length=12.0)


def test_synthetic_log_is_deterministic():
    a = synthetic_log(**SMALL, with_ratings=True, seed=3)
    b = synthetic_log(**SMALL, with_ratings=True, seed=3)
    c = synthetic_log(**SMALL, with_ratings=True, seed=4)
    for col in ("users", "items", "ratings", "timestamps"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col))
    assert len(a) != len(c) or not np.array_equal(a.items, c.items)
    assert a.history == b.history and "seed=3" in a.history[0]


def test_synthetic_log_properties():
    log = synthetic_log(**SMALL, with_ratings=True, seed=0)
    users, items, ts = log.users, log.items, log.timestamps
    counts = np.bincount(users, minlength=200)
    assert counts.min() >= 5 and counts.max() <= 60
    assert 8 < counts.mean() < 18
    keys = users * 120 + items
    assert len(np.unique(keys)) == len(keys)  # no repeated pair
    assert np.all(np.diff(ts) >= 0)  # rows sorted by time
    assert np.all(ts == np.round(ts))
    for u in range(200):  # strictly increasing per user
        assert np.all(np.diff(ts[users == u]) > 0)
    assert set(np.unique(log.ratings).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert synthetic_log(**SMALL).ratings is None


def test_synthetic_log_popularity_skew():
    log = synthetic_log(n_users=1000, n_items=500, mean_length=20.0, seed=0)
    counts = np.sort(np.bincount(log.items, minlength=500))[::-1]
    top_share = counts[:50].sum() / counts.sum()  # uniform would give 0.10
    assert top_share > 0.25
    flat = synthetic_log(
        n_users=1000,
        n_items=500,
        mean_length=20.0,
        popularity_exponent=0.0,
        factor_scale=0.0,
        seed=0,
    )
    flat_counts = np.sort(np.bincount(flat.items, minlength=500))[::-1]
    assert flat_counts[:50].sum() / flat_counts.sum() < 0.15


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(n_users=0), "n_users"),
        (dict(n_items=5), "n_items"),
        (dict(mean_length=2.0), "mean_length"),
        (dict(popularity_exponent=-1.0), "popularity_exponent"),
        (dict(factor_scale=float("nan")), "factor_scale"),
    ],
)
def test_synthetic_log_validates(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        synthetic_log(**kwargs)


def recall_at(scores: np.ndarray, exclude: np.ndarray, target: np.ndarray, k: int = 20) -> float:
    """Mean over users with targets of hits@k / min(#targets, k), excluded items masked."""
    s = np.where(exclude > 0, -np.inf, scores)
    top = np.argpartition(-s, k, axis=1)[:, :k]
    hits = np.take_along_axis(target, top, axis=1).sum(axis=1)
    n = target.sum(axis=1)
    ok = n > 0
    return float(np.mean(hits[ok] / np.minimum(n[ok], k)))


def test_item_knn_beats_popularity_on_default_synthetic():
    split = random_holdout(to_matrix(synthetic_log(seed=0)), (0.7, 0.1, 0.2), seed=0)
    x = split.train.csr.toarray().astype(np.float64)
    valid, test = split.valid.csr.toarray(), split.test.csr.toarray()
    norms = np.sqrt(x.sum(axis=0)) + 1e-12
    sim = (x.T @ x) / norms[:, None] / norms[None, :]
    np.fill_diagonal(sim, 0.0)
    knn = recall_at(x @ sim, x + valid, test)
    pop = recall_at(np.broadcast_to(x.sum(axis=0), x.shape), x + valid, test)
    assert knn > 1.5 * pop, (knn, pop)


def test_synthetic_sequences():
    a = synthetic_sequences(n_users=150, n_items=80, mean_length=10.0, seed=1)
    b = synthetic_sequences(n_users=150, n_items=80, mean_length=10.0, seed=1)
    c = synthetic_sequences(n_users=150, n_items=80, mean_length=10.0, seed=2)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    assert not np.array_equal(a.items[:50], c.items[:50])
    assert a.lengths().min() >= 5 and a.n_items == 80
    for u in range(a.n_users):
        seq = a.sequence(u)
        assert len(set(seq.tolist())) == len(seq)  # no repeats within a sequence
        assert np.all(np.diff(a.timestamps[a.offsets[u] : a.offsets[u + 1]]) > 0)


def test_synthetic_sequences_have_sequential_structure():
    # A first-order transition count model (fit on the train sequences) predicts the test item
    # from the last history item much better than popularity.
    split = synthetic_sequences(seed=0).leave_one_out()
    n = split.n_items
    counts = np.zeros((n, n))
    train = split.train
    users = train.user_of_event()
    same_user = users[1:] == users[:-1]
    np.add.at(counts, (train.items[:-1][same_user], train.items[1:][same_user]), 1.0)
    pop = np.bincount(train.items, minlength=n).astype(np.float64)
    last = split.histories("test", 1)[:, 0]

    def hit_rate(scores, k=20):
        top = np.argsort(-scores, axis=1)[:, :k]
        return float(np.mean((top == split.test_targets[:, None]).any(axis=1)))

    markov = hit_rate(counts[last] + 1e-3 * pop)
    popularity = hit_rate(np.broadcast_to(pop, (split.n_users, n)))
    assert markov > 1.5 * popularity, (markov, popularity)
