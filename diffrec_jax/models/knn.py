r"""Neighbourhood models: ItemKNN and UserKNN, and the similarity building blocks they share.

Both compute a similarity between the *columns* of a matrix, keep the ``topk`` most similar
columns of every target column, and score with the pruned matrix:

- ItemKNN: similarity of the item columns of the train matrix X ([n_users, n_items]);
  :math:`W[i, j]` is the similarity of item i to target item j, and scores are :math:`x_u W`.
- UserKNN: similarity of the user columns of :math:`X^\top`; every target user u keeps its
  ``topk`` most similar users v and scores :math:`\sum_v s(v, u)\, x_v`.

Similarities of a column a to a target column b, as in the RecSys2019 evaluation code of
Ferrari Dacrema et al. (``Compute_Similarity``), with dot :math:`d = x_a^\top x_b`, squared norms
:math:`q_a, q_b`, shrink :math:`h` and :math:`\epsilon = 10^{-6}`:

================  =====================================================================
``cosine``        :math:`d / (\sqrt{q_a q_b} + h + \epsilon)`
``asymmetric``    :math:`d / (q_b^{\alpha} q_a^{1 - \alpha} + h + \epsilon)` (Aiolli 2013)
``jaccard``       :math:`d / (q_a + q_b - d + h + \epsilon)` on binary data
``dice``          :math:`d / (q_a + q_b + h + \epsilon)` on binary data (no factor 2, as in the
                  reference code; rankings are unchanged)
``tversky``       :math:`d / (d + \alpha_T (q_b - d) + \beta_T (q_a - d) + h + \epsilon)` on
                  binary data
================  =====================================================================

``normalize=False`` turns cosine/asymmetric into plain co-occurrence :math:`d / h` (:math:`d`
when h = 0); the set-based similarities ignore it. The diagonal is zero. Optional feature
weighting (``"bm25"``, ``"tfidf"``) reweights the matrix before the similarity, treating the
similarity's columns as documents and its rows as terms (the reference's ``okapi_BM_25`` with
K1 = 1.2, B = 0.75, and ``TF_IDF``); it only affects cosine/asymmetric (the others binarise).

Differences from the reference code, all deliberate: the weighting only shapes the similarity
(scores use the unweighted input rows); UserKNN weights with users as documents (the reference
uses items as documents for both models); UserKNN reads each target user's own top-k
neighbours (the reference keeps top-k per column and reads rows, i.e. the reverse neighbourhood).

:func:`gram` (a dense :math:`A^\top B` by a BLAS or a sparse product, whichever is cheaper) and
:func:`keep_top_k_per_column` are shared with the other item-item models (EASE, SLIM, P3alpha,
RP3beta, GF-CF).

Memory: ItemKNN stores a dense [n_items, n_items] float32 matrix. UserKNN builds a dense
[n_users, n_users] similarity during fit and stores [n_users, topk] neighbour lists plus the dense
[n_users, n_items] float32 train matrix; it refuses more than :data:`MAX_USERKNN_USERS` users.

References:
  Ferrari Dacrema, Cremonesi, Jannach, "Are We Really Making Much Progress? A Worrying Analysis
  of Recent Neural Recommendation Approaches", RecSys 2019.
  Aiolli, "Efficient Top-N Recommendation for Very Large Scale Binary Rated Datasets", RecSys 2013.
"""

from __future__ import annotations

import inspect
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from diffrec_jax.errors import ConfigError, DataError
from diffrec_jax.protocol import FitData, Recommender, UserBatch

SIMILARITIES = ("cosine", "asymmetric", "jaccard", "dice", "tversky")
FEATURE_WEIGHTINGS = ("none", "bm25", "tfidf")
_SET_SIMILARITIES = ("jaccard", "dice", "tversky")
_EPS = 1e-6
BM25_K1, BM25_B = 1.2, 0.75
MAX_USERKNN_USERS = 20_000
_DENSE_CHUNK_ELEMENTS = 1 << 23  # rows x cols densified at once by `gram`


# -- building blocks ----------------------------------------------------------------------------


def _as_csr(x) -> sp.csr_array:
    return x if isinstance(x, sp.csr_array) else sp.csr_array(x)


def _binary(x: sp.csr_array) -> sp.csr_array:
    return sp.csr_array((np.ones(x.nnz, np.float32), x.indices, x.indptr), shape=x.shape)


def _is_integer_exact(x: sp.csr_array) -> bool:
    """True when x^T x is exact in float32: integer values and column sums of squares < 2**24."""
    data = np.asarray(x.data, np.float64)
    if not np.array_equal(data, np.round(data)):
        return False
    colsq = np.bincount(x.indices, weights=data * data, minlength=x.shape[1])
    return bool(colsq.max(initial=0.0) < 2.0**24)


def gram(a, b=None, *, dtype=np.float32, method: str = "auto") -> np.ndarray:
    r"""Dense :math:`a^\top b` of two sparse matrices with the same rows (b defaults to a).

    Picks the faster of a dense float32 BLAS product over row chunks (memory: one chunk of
    ~8M elements) and a sparse product, from their operation counts. With ``dtype=float64`` the
    dense float32 path is used only when it is exact (a is b, integer values, column sums of
    squares < 2**24), so the result equals the float64 product.

    Args:
      a: [n, p] scipy sparse (or dense) matrix.
      b: [n, q] matrix, or None for a.
      dtype: output dtype, float32 or float64.
      method: "auto", or "dense" / "sparse" to force a path ("dense" is still refused for
        float64 when it would not be exact).

    Returns:
      [p, q] array of `dtype`.
    """
    a = _as_csr(a)
    same = b is None
    b = a if same else _as_csr(b)
    n, p = a.shape
    q = b.shape[1]
    if b.shape[0] != n:
        raise DataError(f"gram: a has {n} rows but b has {b.shape[0]}")
    dtype = np.dtype(dtype)
    lens_a, lens_b = np.diff(a.indptr), np.diff(b.indptr)
    sparse_ops = float(np.dot(lens_a.astype(np.float64), lens_b))
    dense_ops = n * p * q / (2.0 if same else 1.0)
    if method not in ("auto", "dense", "sparse"):
        raise ConfigError(f"method={method!r}; expected 'auto', 'dense' or 'sparse'")
    # Measured on a 2-core x86 machine: ~1e11 dense mult-adds/s vs ~1e8 sparse products/s.
    use_dense = dense_ops / 1e11 < sparse_ops / 1e8 if method == "auto" else method == "dense"
    if dtype == np.float64 and not (same and _is_integer_exact(a)):
        use_dense = False
    if not use_dense:
        a = a.astype(dtype)
        out = a.T @ (a if same else b.astype(dtype))
        return out.toarray() if sp.issparse(out) else np.asarray(out, dtype)
    out = np.zeros((p, q), np.float32)
    chunk = max(1, _DENSE_CHUNK_ELEMENTS // max(p, q, 1))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        da = a[start:stop].toarray().astype(np.float32, copy=False)
        db = da if same else b[start:stop].toarray().astype(np.float32, copy=False)
        out += da.T @ db
    return out.astype(dtype, copy=False)


def weight_features(x, method: str) -> sp.csr_array:
    r"""Reweights x ([terms, documents]: the similarity's columns are the documents).

    ``"bm25"``: :math:`v (K_1 + 1) / (K_1 \ell_d + v) \cdot idf_t` with length norm
    :math:`\ell_d = 1 - B + B\, |d| / \overline{|d|}` (|d| = column sum) and
    :math:`idf_t = \log(N_{docs} / (1 + df_t))`; ``"tfidf"``: :math:`\sqrt{v}\, idf_t`;
    ``"none"``: x unchanged. As the reference's ``okapi_BM_25`` / ``TF_IDF`` on :math:`x^\top`.

    Returns:
      [terms, documents] float32 csr_array with the same pattern.
    """
    if method not in FEATURE_WEIGHTINGS:
        raise ConfigError(f"feature_weighting={method!r}; expected one of {FEATURE_WEIGHTINGS}")
    x = _as_csr(x)
    if method == "none":
        return x
    n_terms, n_docs = x.shape
    data = np.asarray(x.data, np.float64)
    rows = np.repeat(np.arange(n_terms), np.diff(x.indptr))
    idf = np.log(n_docs / (1.0 + np.diff(x.indptr)))
    if method == "tfidf":
        new = np.sqrt(data) * idf[rows]
    else:
        doc_len = np.bincount(x.indices, weights=data, minlength=n_docs)
        length_norm = (1.0 - BM25_B) + BM25_B * doc_len / max(doc_len.mean(), 1e-12)
        new = data * (BM25_K1 + 1.0) / (BM25_K1 * length_norm[x.indices] + data) * idf[rows]
    return sp.csr_array((new.astype(np.float32), x.indices, x.indptr), shape=x.shape)


def column_similarity(
    x,
    *,
    similarity: str = "cosine",
    shrink: float = 0.0,
    normalize: bool = True,
    asymmetric_alpha: float = 0.5,
    tversky_alpha: float = 1.0,
    tversky_beta: float = 1.0,
) -> np.ndarray:
    """Similarity of every column of x to every target column (formulas in the module doc).

    Args:
      x: [n_rows, n] scipy sparse matrix; the columns are compared.
      similarity, shrink, normalize, asymmetric_alpha, tversky_alpha, tversky_beta: see the
        module docstring.

    Returns:
      [n, n] float32 S with S[a, b] the similarity of column a to target column b and a zero
      diagonal.
    """
    _check_similarity(similarity, shrink)
    x = _as_csr(x)
    if similarity in _SET_SIMILARITIES:
        x = _binary(x)
    s = gram(x)  # dot products
    sq = np.diag(s).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if similarity in ("cosine", "asymmetric") and not normalize:
            if shrink:
                s /= np.float32(shrink)
        elif similarity == "cosine":
            norm = np.sqrt(sq).astype(np.float32)
            s /= np.outer(norm, norm) + np.float32(shrink + _EPS)
        elif similarity == "asymmetric":
            left = np.power(sq, 1.0 - asymmetric_alpha).astype(np.float32)
            right = np.power(sq, asymmetric_alpha).astype(np.float32)
            s /= np.outer(left, right) + np.float32(shrink + _EPS)
        else:
            q = sq.astype(np.float32)
            if similarity == "jaccard":
                den = q[:, None] + q[None, :] - s
            elif similarity == "dice":
                den = q[:, None] + q[None, :]
            else:  # tversky
                den = (
                    s
                    + np.float32(tversky_alpha) * (q[None, :] - s)
                    + np.float32(tversky_beta) * (q[:, None] - s)
                )
            den += np.float32(shrink + _EPS)
            s /= den
    np.fill_diagonal(s, 0.0)
    # 0 / 0 (empty columns under asymmetric powers) and x / inf are both "no similarity".
    s[~np.isfinite(s)] = 0.0
    return s


def top_k_per_column(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest entries of every column of s.

    Args:
      s: [n_rows, n_cols] array.
      k: neighbours kept per column, clipped to n_rows.

    Returns:
      (rows [n_cols, k] int32, values [n_cols, k] float32): for every column, the row indices
      of its k largest entries and those entries, in no particular order (ties at the k-th
      value are broken arbitrarily).
    """
    k = min(int(k), s.shape[0])
    st = np.ascontiguousarray(s.T)
    if k < st.shape[1]:
        idx = np.argpartition(-st, k - 1, axis=1)[:, :k]
    else:
        idx = np.broadcast_to(np.arange(st.shape[1]), st.shape).copy()
    vals = np.take_along_axis(st, idx, axis=1)
    return idx.astype(np.int32), vals.astype(np.float32)


def keep_top_k_per_column(s: np.ndarray, k: int) -> np.ndarray:
    """s with all but the k largest entries of every column set to zero (a new array)."""
    rows, vals = top_k_per_column(s, k)
    out = np.zeros_like(s, dtype=np.float32)
    out[rows, np.arange(s.shape[1])[:, None]] = vals
    return out


def _check_similarity(
    similarity, shrink, asymmetric_alpha=0.5, tversky_alpha=1.0, tversky_beta=1.0
) -> None:
    if similarity not in SIMILARITIES:
        raise ConfigError(f"similarity={similarity!r}; expected one of {SIMILARITIES}")
    if not (np.isfinite(shrink) and shrink >= 0):
        raise ConfigError(f"shrink={shrink!r}; expected a finite number >= 0")
    for name, v in (
        ("asymmetric_alpha", asymmetric_alpha),
        ("tversky_alpha", tversky_alpha),
        ("tversky_beta", tversky_beta),
    ):
        if not (np.isfinite(v) and v >= 0):
            raise ConfigError(f"{name}={v!r}; expected a finite number >= 0")


def _check_topk(topk) -> None:
    if isinstance(topk, bool) or not isinstance(topk, int | np.integer) or topk < 1:
        raise ConfigError(
            f"kNN topk={topk!r}; expected a positive integer (the neighbours kept; a topk above "
            "their number keeps them all)"
        )


# -- models -------------------------------------------------------------------------------------


def _knn_hparams(
    topk: int,
    shrink: float,
    similarity: str,
    normalize: bool,
    asymmetric_alpha: float,
    tversky_alpha: float,
    tversky_beta: float,
    feature_weighting: str,
) -> tuple[dict, dict]:
    """Checks the kNN hyperparameters; returns (all of them, the similarity's arguments)."""
    _check_topk(topk)
    _check_similarity(similarity, shrink, asymmetric_alpha, tversky_alpha, tversky_beta)
    if feature_weighting not in FEATURE_WEIGHTINGS:
        raise ConfigError(
            f"feature_weighting={feature_weighting!r}; expected one of {FEATURE_WEIGHTINGS}"
        )
    hparams = dict(
        topk=topk,
        shrink=shrink,
        similarity=similarity,
        normalize=normalize,
        asymmetric_alpha=asymmetric_alpha,
        tversky_alpha=tversky_alpha,
        tversky_beta=tversky_beta,
        feature_weighting=feature_weighting,
    )
    sim_args = {k: v for k, v in hparams.items() if k not in ("topk", "feature_weighting")}
    return hparams, sim_args


def itemknn(
    topk: int = 50,
    shrink: float = 100.0,
    similarity: str = "cosine",
    normalize: bool = True,
    asymmetric_alpha: float = 0.5,
    tversky_alpha: float = 1.0,
    tversky_beta: float = 1.0,
    feature_weighting: str = "none",
) -> Recommender:
    """Item-based kNN (search space in :mod:`diffrec_jax.models.search_spaces`).

    Defaults are the reference code's (``ItemKNNCFRecommender.fit``: topK=50, shrink=100,
    cosine).

    Args:
      topk: neighbours kept per target item (reference range 5-1000).
      shrink: shrink term of the denominator (0-1000).
      similarity: one of :data:`SIMILARITIES`.
      normalize: cosine/asymmetric: divide by the norms (else co-occurrence / shrink).
      asymmetric_alpha: exponent of the target's norm in the asymmetric cosine (0-2).
      tversky_alpha, tversky_beta: Tversky weights of the target's / the neighbour's own items.
      feature_weighting: "none", "bm25" or "tfidf" (users are the terms).

    Params: ``{"weights": [n_items, n_items] float32}``, at most topk nonzeros per column.
    """
    hparams, sim_args = _knn_hparams(
        topk,
        shrink,
        similarity,
        normalize,
        asymmetric_alpha,
        tversky_alpha,
        tversky_beta,
        feature_weighting,
    )

    def fit(data: FitData, key: jax.Array) -> dict[str, jax.Array]:
        del key  # deterministic
        x = weight_features(data.train.csr, feature_weighting)
        s = column_similarity(x, **sim_args)
        return {"weights": jnp.asarray(keep_top_k_per_column(s, topk))}

    def score(params: dict[str, jax.Array], batch: UserBatch) -> jax.Array:
        return batch.rows @ params["weights"]

    return Recommender("itemknn", hparams, fit, score)


def userknn(
    topk: int = 50,
    shrink: float = 100.0,
    similarity: str = "cosine",
    normalize: bool = True,
    asymmetric_alpha: float = 0.5,
    tversky_alpha: float = 1.0,
    tversky_beta: float = 1.0,
    feature_weighting: str = "none",
) -> Recommender:
    r"""User-based kNN; hyperparameters as :func:`itemknn` with users in place of items.

    Defaults are the reference code's (``UserKNNCFRecommender.fit``: topK=50, shrink=100,
    cosine). Score of user u: :math:`\sum_{v \in N_k(u)} s(v, u)\, x_v` over u's topk most
    similar users (train rows). The input rows of the batch are not used: the neighbourhoods
    come from train. Small topk (<= n_users / 8) sums gathered rows, larger topk multiplies a
    densified [B, n_users] weight block by the train matrix.

    Params: ``{"neighbours": [n_users, k] int32, "weights": [n_users, k] float32,
    "train": [n_users, n_items] float32}`` with k = min(topk, n_users).
    """
    hparams, sim_args = _knn_hparams(
        topk,
        shrink,
        similarity,
        normalize,
        asymmetric_alpha,
        tversky_alpha,
        tversky_beta,
        feature_weighting,
    )

    def fit(data: FitData, key: jax.Array) -> dict[str, jax.Array]:
        del key  # deterministic
        train = data.train
        if train.n_users > MAX_USERKNN_USERS:
            raise DataError(
                f"userknn: {train.n_users} users; expected at most "
                f"{MAX_USERKNN_USERS} (the fit builds a dense users x users "
                "similarity and stores the dense train matrix)"
            )
        xt = weight_features(sp.csr_array(train.csr.T), feature_weighting)
        s = column_similarity(xt, **sim_args)
        neighbours, weights = top_k_per_column(s, topk)
        dense = train.dense_rows(np.arange(train.n_users))
        return {
            "neighbours": jnp.asarray(neighbours),
            "weights": jnp.asarray(weights),
            "train": jnp.asarray(dense),
        }

    def score(params: dict[str, jax.Array], batch: UserBatch) -> jax.Array:
        train = params["train"]
        neighbours = params["neighbours"][batch.users]  # [B, k]
        weights = params["weights"][batch.users]
        n_users, k = params["neighbours"].shape
        if 8 * k <= n_users:

            def add_neighbour(acc, nw):
                nb, w = nw
                return acc + w[:, None] * train[nb], None

            init = jnp.zeros((batch.users.shape[0], train.shape[1]), train.dtype)
            out, _ = jax.lax.scan(add_neighbour, init, (neighbours.T, weights.T))
            return out
        b = batch.users.shape[0]
        dense = jnp.zeros((b, n_users), train.dtype)
        dense = dense.at[jnp.arange(b)[:, None], neighbours].add(weights)
        return dense @ train

    return Recommender("userknn", hparams, fit, score)


KNN_DEFAULTS: dict[str, Any] = {
    name: p.default for name, p in inspect.signature(itemknn).parameters.items()
}
"""The hyperparameters of :func:`itemknn` and :func:`userknn` and their defaults."""
