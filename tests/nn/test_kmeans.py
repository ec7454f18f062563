"""k-means: Lloyd's iterations against a plain numpy loop, initialisations, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from diffrec_jax.errors import ConfigError, DataError
from diffrec_jax.nn import kmeans as km


def _blobs(seed, n=120, d=5, k=3, spread=4.0):
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, spread, (k, d))
    truth = rng.integers(0, k, n)
    return means[truth] + rng.normal(0.0, 1.0, (n, d)), truth


def np_lloyd(x, centers, tol=1e-4, max_iter=1000):
    """Reference: kmeans_pytorch's loop, written point by point and cluster by cluster."""
    x = np.asarray(x, np.float64)
    centers = np.array(centers, np.float64)
    for it in range(1, max_iter + 1):
        labels = np.empty(len(x), np.int64)
        for i, p in enumerate(x):
            dists = [float(np.sum((p - c) ** 2)) for c in centers]
            labels[i] = int(np.argmin(dists))
        previous = centers.copy()
        for j in range(len(centers)):
            members = x[labels == j]
            if len(members):
                centers[j] = members.mean(axis=0)
        shift = sum(np.linalg.norm(centers[j] - previous[j]) for j in range(len(centers)))
        if shift**2 < tol:
            return labels, centers, it
    return labels, centers, max_iter


@pytest.mark.parametrize(("seed", "k"), [(0, 2), (1, 3), (2, 5), (3, 8)])
def test_lloyd_matches_numpy_loop_from_the_same_init(seed, k):
    x, _ = _blobs(seed, k=max(k - 1, 2), spread=2.0)  # overlapping blobs: several iterations
    init = x[np.random.default_rng(seed + 100).choice(len(x), k, replace=False)]
    result = km.lloyd(x, init)
    labels, centers, n_iter = np_lloyd(x, init)
    np.testing.assert_array_equal(result.labels, labels)
    np.testing.assert_allclose(result.centers, centers, rtol=1e-12, atol=1e-12)
    assert result.n_iter == n_iter and result.converged


@pytest.mark.parametrize("init", km.INITS)
def test_kmeans_matches_numpy_loop_and_is_deterministic(init):
    x, _ = _blobs(4, n=90, k=4, spread=2.5)
    a = km.kmeans(x, 4, init=init, seed=7)
    b = km.kmeans(x, 4, init=init, seed=7)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centers, b.centers)
    if init == "random":
        start = x[km.random_init_indices(len(x), 4, 7)]
    else:
        start = x[km.kmeans_plus_plus_indices(x, 4, 7)]
    labels, centers, _ = np_lloyd(x, start)
    np.testing.assert_array_equal(a.labels, labels)
    np.testing.assert_allclose(a.centers, centers, rtol=1e-12, atol=1e-12)
    # Another seed starts elsewhere.
    other = (
        km.random_init_indices(len(x), 4, 8)
        if init == "random"
        else km.kmeans_plus_plus_indices(x, 4, 8)
    )
    first = (
        km.random_init_indices(len(x), 4, 7)
        if init == "random"
        else km.kmeans_plus_plus_indices(x, 4, 7)
    )
    assert not np.array_equal(other, first)


@pytest.mark.parametrize(("n", "k", "seed"), [(2810, 2, 1), (50, 7, 0), (10, 10, 3)])
def test_random_init_is_kmeans_pytorch_choice_without_replacement(n, k, seed):
    # np.random.choice(n, k, replace=False) after np.random.seed(seed) is the first k entries
    # of the legacy generator's permutation of n.
    expected = np.random.RandomState(seed).permutation(n)[:k]
    got = km.random_init_indices(n, k, seed)
    np.testing.assert_array_equal(got, expected)
    assert len(set(got.tolist())) == k


def test_kmeans_plus_plus_recovers_separated_blobs():
    x, truth = _blobs(5, n=200, k=4, spread=30.0)
    result = km.kmeans(x, 4, init="k-means++", seed=0)
    # Same partition up to relabelling: every true blob maps to exactly one cluster.
    pairs = set(zip(truth.tolist(), result.labels.tolist(), strict=True))
    assert len(pairs) == 4
    assert result.converged


def test_kmeans_plus_plus_with_duplicate_points():
    x = np.zeros((6, 3))
    x[3:] = 1.0  # two distinct points, each three times
    idx = km.kmeans_plus_plus_indices(x, 4, seed=0)
    assert len(set(idx.tolist())) == 4  # falls back to uniform among the unchosen points
    result = km.kmeans(x, 2, init="k-means++", seed=0)
    assert sorted(np.bincount(result.labels).tolist()) == [3, 3]


def test_empty_cluster_keeps_its_centre():
    x = np.array([[0.0], [1.0], [2.0]])
    result = km.lloyd(x, np.array([[0.0], [100.0]]))
    np.testing.assert_array_equal(result.labels, [0, 0, 0])
    np.testing.assert_allclose(result.centers, [[1.0], [100.0]])


def test_max_iter_reports_no_convergence():
    x, _ = _blobs(6, n=150, k=5, spread=1.0)
    full = km.kmeans(x, 5, seed=2)
    assert full.n_iter > 1
    short = km.kmeans(x, 5, seed=2, max_iter=1)
    assert short.n_iter == 1 and not short.converged


def test_chunked_distances(monkeypatch):
    rng = np.random.default_rng(0)
    x, c = rng.normal(size=(37, 4)), rng.normal(size=(3, 4))
    expected = ((x[:, None, :] - c[None]) ** 2).sum(-1)
    monkeypatch.setattr(km, "_CHUNK_ELEMENTS", 20)  # 1 point per chunk
    np.testing.assert_allclose(km.squared_distances(x, c), expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("x", "k", "kwargs", "error", "match"),
    [
        (np.zeros((5, 2)), 6, {}, ConfigError, "n_clusters=6"),
        (np.zeros((5, 2)), 0, {}, ConfigError, "n_clusters=0"),
        (np.zeros((5, 2)), 2, {"init": "kmeans||"}, ConfigError, "init='kmeans||'"),
        (np.zeros((5, 2)), 2, {"seed": -1}, ConfigError, "seed"),
        (np.zeros((5, 2)), 2, {"max_iter": 0}, ConfigError, "max_iter"),
        (np.zeros(5), 2, {}, DataError, r"shape \(5,\)"),
        (np.array([[0.0, 1.0], [np.nan, 0.0]]), 1, {}, DataError, "row 1"),
    ],
)
def test_invalid_input(x, k, kwargs, error, match):
    with pytest.raises(error, match=match):
        km.kmeans(x, k, **kwargs)
