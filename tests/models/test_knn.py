"""ItemKNN / UserKNN and their similarity building blocks against plain float64 loops."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from diffrec_jax import models
from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.errors import ConfigError, DataError
from diffrec_jax.models import knn
from diffrec_jax.protocol import FitData, UserBatch

EPS = 1e-6


def _matrix(dense: np.ndarray) -> InteractionMatrix:
    users, items = np.nonzero(dense)
    return InteractionMatrix.from_arrays(
        users, items, shape=dense.shape, values=dense[users, items]
    )


def _batch(dense: np.ndarray) -> UserBatch:
    return UserBatch(jnp.arange(dense.shape[0], dtype=jnp.int32), jnp.asarray(dense, jnp.float32))


def _random(rng, shape, density=0.4, weighted=True) -> np.ndarray:
    pattern = rng.random(shape) < density
    values = rng.uniform(0.5, 3.0, shape) if weighted else np.ones(shape)
    return np.where(pattern, values, 0.0)


def reference_similarity(x, kind, shrink=0.0, normalize=True, a_alpha=0.5, t_alpha=1.0, t_beta=1.0):
    """S[a, b] of column a to target column b, one pair at a time (float64)."""
    x = np.asarray(x, np.float64)
    if kind in ("jaccard", "dice", "tversky"):
        x = (x != 0).astype(np.float64)
    n = x.shape[1]
    s = np.zeros((n, n))
    for a in range(n):
        for b in range(n):
            if a == b:
                continue
            d = float(x[:, a] @ x[:, b])
            qa, qb = np.float64(x[:, a] @ x[:, a]), np.float64(x[:, b] @ x[:, b])
            if kind in ("cosine", "asymmetric") and not normalize:
                s[a, b] = d / shrink if shrink else d
            elif kind == "cosine":
                s[a, b] = d / (np.sqrt(qa) * np.sqrt(qb) + shrink + EPS)
            elif kind == "asymmetric":
                with np.errstate(divide="ignore"):  # 0 ** negative = inf: no similarity
                    s[a, b] = d / (qb**a_alpha * qa ** (1 - a_alpha) + shrink + EPS)
            elif kind == "jaccard":
                s[a, b] = d / (qa + qb - d + shrink + EPS)
            elif kind == "dice":
                s[a, b] = d / (qa + qb + shrink + EPS)
            else:
                s[a, b] = d / (d + t_alpha * (qb - d) + t_beta * (qa - d) + shrink + EPS)
    return s


def reference_top_k_columns(s, k):
    out = np.zeros_like(s)
    for b in range(s.shape[1]):
        keep = np.argsort(-s[:, b], kind="stable")[:k]
        out[keep, b] = s[keep, b]
    return out


def test_cosine_by_hand():
    # Items 0 and 1 share users 0 and 1; item 0 has 2 users, item 1 has 3.
    x = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [0, 1, 0, 1, 0], [0, 0, 0, 1, 1]], np.float32)
    s = knn.column_similarity(sp.csr_array(x), similarity="cosine", shrink=0.0)
    assert s[0, 1] == pytest.approx(2 / (np.sqrt(2) * np.sqrt(3) + EPS), rel=1e-6)
    assert s[0, 4] == 0.0
    j = knn.column_similarity(sp.csr_array(x), similarity="jaccard", shrink=1.0)
    assert j[0, 1] == pytest.approx(2 / (2 + 3 - 2 + 1 + EPS), rel=1e-6)
    # Tversky with alpha=1, beta=0: |a & b| / |b| (share of the target's users).
    t = knn.column_similarity(
        sp.csr_array(x), similarity="tversky", tversky_alpha=1.0, tversky_beta=0.0
    )
    assert t[1, 0] == pytest.approx(2 / 2, rel=1e-5)
    assert t[0, 1] == pytest.approx(2 / 3, rel=1e-5)
    np.testing.assert_array_equal(np.diag(s), 0.0)


@pytest.mark.parametrize(
    "kind,kwargs",
    [
        ("cosine", {}),
        ("cosine", {"shrink": 3.0}),
        ("cosine", {"shrink": 2.0, "normalize": False}),
        ("asymmetric", {"asymmetric_alpha": 0.2, "shrink": 1.0}),
        ("asymmetric", {"asymmetric_alpha": 1.7}),
        ("jaccard", {"shrink": 0.5}),
        ("dice", {}),
        ("tversky", {"tversky_alpha": 0.3, "tversky_beta": 1.4, "shrink": 2.0}),
    ],
)
def test_similarity_matches_pairwise_loop(kind, kwargs):
    rng = np.random.default_rng(0)
    x = _random(rng, (30, 12))
    x[:, 5] = 0.0  # an empty column
    got = knn.column_similarity(sp.csr_array(x), similarity=kind, **kwargs)
    names = {"asymmetric_alpha": "a_alpha", "tversky_alpha": "t_alpha", "tversky_beta": "t_beta"}
    expected = reference_similarity(x, kind, **{names.get(k, k): v for k, v in kwargs.items()})
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("method", ["dense", "sparse"])
def test_gram_paths_match_float64(method):
    rng = np.random.default_rng(1)
    a, b = _random(rng, (50, 7)), _random(rng, (50, 9))
    np.testing.assert_allclose(knn.gram(sp.csr_array(a), method=method), a.T @ a, rtol=1e-5)
    np.testing.assert_allclose(
        knn.gram(sp.csr_array(a), sp.csr_array(b), method=method), a.T @ b, rtol=1e-5
    )
    # float64 requests are float64-exact on both paths (non-integer data go sparse).
    np.testing.assert_allclose(
        knn.gram(sp.csr_array(a), dtype=np.float64, method=method), a.T @ a, rtol=1e-13
    )
    counts = rng.integers(0, 4, (50, 7)).astype(np.float64)
    g = knn.gram(sp.csr_array(counts), dtype=np.float64, method=method)
    np.testing.assert_array_equal(g, counts.T @ counts)


@pytest.mark.parametrize("method", ["bm25", "tfidf"])
def test_feature_weighting_matches_loop(method):
    rng = np.random.default_rng(2)
    x = _random(rng, (8, 6))  # [terms, documents]
    got = knn.weight_features(sp.csr_array(x), method).toarray()
    n_docs = x.shape[1]
    doc_len = x.sum(axis=0)
    expected = np.zeros_like(x)
    for t in range(x.shape[0]):
        idf = np.log(n_docs / (1 + np.count_nonzero(x[t])))
        for d in range(n_docs):
            v = x[t, d]
            if v == 0:
                continue
            if method == "tfidf":
                expected[t, d] = np.sqrt(v) * idf
            else:
                norm = 1 - 0.75 + 0.75 * doc_len[d] / doc_len.mean()
                expected[t, d] = v * 2.2 / (1.2 * norm + v) * idf
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_top_k_per_column_keeps_the_largest():
    rng = np.random.default_rng(3)
    s = rng.standard_normal((9, 7))
    np.testing.assert_array_equal(
        knn.keep_top_k_per_column(s, 3), reference_top_k_columns(s, 3).astype(np.float32)
    )
    np.testing.assert_array_equal(knn.keep_top_k_per_column(s, 50), s.astype(np.float32))


@pytest.mark.parametrize(
    "hparams",
    [
        {"topk": 4, "shrink": 2.0},
        {"topk": 3, "similarity": "asymmetric", "asymmetric_alpha": 0.7},
        {"topk": 100, "similarity": "tversky", "tversky_alpha": 0.5, "tversky_beta": 0.2},
        {"topk": 5, "feature_weighting": "tfidf"},
    ],
)
def test_itemknn_scores_match_reference(hparams):
    rng = np.random.default_rng(4)
    x = _random(rng, (25, 10))
    model = models.get("itemknn").build(**hparams)
    params = model.fit(FitData(_matrix(x)), jax.random.key(0))
    xs = x
    if hparams.get("feature_weighting", "none") != "none":
        xs = knn.weight_features(sp.csr_array(x), hparams["feature_weighting"]).toarray()
    s = reference_similarity(
        xs,
        hparams.get("similarity", "cosine"),
        shrink=hparams.get("shrink", 100.0),
        a_alpha=hparams.get("asymmetric_alpha", 0.5),
        t_alpha=hparams.get("tversky_alpha", 1.0),
        t_beta=hparams.get("tversky_beta", 1.0),
    )
    w = reference_top_k_columns(s, hparams["topk"])
    np.testing.assert_allclose(np.asarray(params["weights"]), w, rtol=2e-5, atol=1e-7)
    scores = np.asarray(jax.jit(model.score)(params, _batch(x)))
    np.testing.assert_allclose(scores, x @ w, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("topk", [2, 9, 40])  # scan path (8k <= n_users), dense path, all users
def test_userknn_scores_match_reference(topk):
    rng = np.random.default_rng(5)
    x = _random(rng, (24, 15), density=0.3)  # weighted: no ties between cosine similarities
    model = models.get("userknn").build(topk=topk, shrink=1.0)
    params = model.fit(FitData(_matrix(x)), jax.random.key(0))
    s = reference_similarity(x.T, "cosine", shrink=1.0)  # s[v, u]: v's similarity to target u
    expected = np.zeros_like(x)
    for u in range(x.shape[0]):
        neighbours = np.argsort(-s[:, u], kind="stable")[:topk]
        expected[u] = s[neighbours, u] @ x[neighbours]
    batch = UserBatch(jnp.asarray([3, 0, 17], jnp.int32), jnp.zeros((3, 15), jnp.float32))
    scores = np.asarray(jax.jit(model.score)(params, batch))
    np.testing.assert_allclose(scores, expected[[3, 0, 17]], rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("topk", [2, 9])
def test_userknn_neighbourhoods_with_ties(topk):
    # Jaccard on binary data ties often: any tie-break is fine, the kept values are not.
    rng = np.random.default_rng(6)
    x = _random(rng, (24, 15), density=0.3, weighted=False)
    model = models.get("userknn").build(topk=topk, shrink=0.0, similarity="jaccard")
    params = model.fit(FitData(_matrix(x)), jax.random.key(0))
    s = reference_similarity(x.T, "jaccard")
    neighbours, weights = np.asarray(params["neighbours"]), np.asarray(params["weights"])
    users = jnp.arange(24, dtype=jnp.int32)
    scores = np.asarray(jax.jit(model.score)(params, UserBatch(users, jnp.zeros((24, 15)))))
    for u in range(24):
        np.testing.assert_allclose(np.sort(weights[u]), np.sort(s[:, u])[-topk:], rtol=1e-5)
        np.testing.assert_allclose(weights[u], s[neighbours[u], u], rtol=1e-5)
        np.testing.assert_allclose(scores[u], weights[u] @ x[neighbours[u]], rtol=1e-5, atol=1e-6)


def test_userknn_refuses_too_many_users(monkeypatch):
    monkeypatch.setattr(knn, "MAX_USERKNN_USERS", 3)
    model = models.get("userknn").build()
    with pytest.raises(DataError, match="at most 3"):
        model.fit(FitData(_matrix(np.eye(4))), jax.random.key(0))


@pytest.mark.parametrize("name", ["itemknn", "userknn"])
@pytest.mark.parametrize(
    "bad,match",
    [
        ({"topk": 0}, "topk"),
        ({"similarity": "pearson"}, "similarity"),
        ({"shrink": -1.0}, "shrink"),
        ({"tversky_beta": float("nan")}, "tversky_beta"),
        ({"feature_weighting": "idf"}, "feature_weighting"),
    ],
)
def test_bad_hyperparameters_raise(name, bad, match):
    with pytest.raises(ConfigError, match=match):
        models.get(name).build(**bad)
