"""diffrec_jax.metrics.evaluate against the plain-loop numpy reference (metrics_reference.py)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from metrics_reference import reference_evaluate

from diffrec_jax.errors import ConfigError, DataError, DiffrecError
from diffrec_jax.metrics import CONVENTIONS, evaluate, evaluate_top_items

N_USERS, N_ITEMS = 40, 25


def make_problem(seed: int, n_users: int = N_USERS, n_items: int = N_ITEMS):
    """Integer-valued scores (ties), sparse truth with empty users, exclusions that leave some
    users fewer than K rankable items (one user none at all)."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, (n_users, n_items)).astype(np.float32)
    truth = rng.random((n_users, n_items)) < 0.15
    truth[rng.random(n_users) < 0.2] = False  # users without truth
    truth[0, :3] = True  # at least a few evaluated users
    exclude = (rng.random((n_users, n_items)) < 0.3) & ~truth
    exclude[1] = ~truth[1]  # only the relevant items are rankable
    exclude[2, :] = True  # nothing rankable, but truth
    truth[2, 0] = True
    exclude[3, : n_items - 4] = True  # 4 rankable items
    popularity = rng.integers(0, 8, n_items)
    popularity[:2] = 0  # items never seen in training
    return scores, truth, exclude, popularity


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_reference(convention, seed):
    scores, truth, exclude, pop = make_problem(seed)
    ks = (1, 5, 10, N_ITEMS + 7)  # the last is clipped to the catalogue
    result = evaluate(
        scores,
        sp.csr_array(truth),
        exclude=sp.csr_matrix(exclude),
        ks=ks,
        convention=convention,
        item_popularity=pop,
        batch_size=7,
    )
    summary, per_user = reference_evaluate(scores, truth, exclude, ks, convention, pop)
    assert set(result.summary) == set(summary)
    for key, value in summary.items():
        np.testing.assert_allclose(result.summary[key], value, rtol=1e-12, atol=1e-15, err_msg=key)
    assert set(result.per_user) == set(per_user)
    for key, values in per_user.items():
        assert result.per_user[key].dtype == np.float64
        np.testing.assert_allclose(
            result.per_user[key], values, rtol=1e-12, atol=1e-15, err_msg=key
        )
    assert result.n_users_evaluated == int(truth.any(axis=1).sum())
    assert result.convention == convention
    assert result.ks == ks


def test_top_items_match_reference_lists():
    from metrics_reference import ranked_list

    scores, truth, exclude, _ = make_problem(3)
    k = 12
    result = evaluate(scores, truth, exclude=exclude, ks=(k,))
    assert result.top_items.shape == (N_USERS, k) and result.top_items.dtype == np.int32
    for u in range(N_USERS):
        row = result.top_items[u]
        if not truth[u].any():
            assert (row == -1).all()
            continue
        ref = ranked_list(scores[u], exclude[u], k)
        np.testing.assert_array_equal(row[: len(ref)], ref)
        assert (row[len(ref) :] == -1).all()


def test_no_exclusion_and_dense_inputs():
    scores, truth, _, _ = make_problem(4)
    no_excl = np.zeros_like(truth)
    result = evaluate(scores, truth, ks=(3, 10), convention="recsys2019")
    summary, _ = reference_evaluate(scores, truth, no_excl, (3, 10), "recsys2019")
    for key, value in summary.items():
        np.testing.assert_allclose(result.summary[key], value, rtol=1e-12, err_msg=key)
    assert "Novelty@3" not in result.summary and "AvgPop@10" not in result.per_user


@pytest.mark.parametrize("batch_size", [1, 3, 16, 40, 1000])
def test_results_do_not_depend_on_batch_size(batch_size):
    rng = np.random.default_rng(5)
    scores = rng.normal(size=(40, 60)).astype(np.float32)
    scores[:, ::3] = np.round(scores[:, ::3])  # some ties
    truth = sp.random_array((40, 60), density=0.1, rng=rng, format="csr")
    exclude = sp.random_array((40, 60), density=0.2, rng=rng, format="csr")
    pop = rng.integers(0, 30, 60)
    kwargs = dict(exclude=exclude, ks=(5, 20), item_popularity=pop)
    base = evaluate(scores, truth, batch_size=None, **kwargs)
    other = evaluate(scores, truth, batch_size=batch_size, **kwargs)
    assert base.summary == other.summary
    np.testing.assert_array_equal(base.top_items, other.top_items)
    for key in base.per_user:
        np.testing.assert_array_equal(base.per_user[key], other.per_user[key])
    # JAX input gives the same result.
    on_device = evaluate(jnp.asarray(scores), truth, batch_size=batch_size, **kwargs)
    assert on_device.summary == base.summary


def test_worked_example_of_metrics_md():
    """K = 10, T = 15, hits at ranks 1, 3, 7 (shared/reference/metrics.md)."""
    n_items = 40
    scores = (n_items - np.arange(n_items, dtype=np.float32))[None]  # item i at rank i + 1
    truth = np.zeros((1, n_items), bool)
    truth[0, [0, 2, 6]] = True  # ranks 1, 3, 7
    truth[0, 20:32] = True  # 12 more relevant items outside the top 10
    assert truth.sum() == 15
    rec = evaluate(scores, truth, ks=(10,), convention="recbole").summary
    r19 = evaluate(scores, truth, ks=(10,), convention="recsys2019").summary
    assert round(rec["NDCG@10"], 4) == 0.4035
    assert round(r19["NDCG@10"], 4) == 0.3128
    assert round(rec["Recall@10"], 3) == 0.200
    assert round(rec["Recall@10"] * 15 / 10, 3) == 0.300  # the min(K, T) denominator
    assert round(rec["MAP@10"], 4) == 0.2095
    assert round(rec["MAP@10"] * 10 / 15, 4) == 0.1397  # AP over T
    assert r19["MAP@10"] == rec["MAP@10"]
    assert rec["HitRate@10"] == 1.0 and r19["HitRate@10"] == 3.0
    assert rec["MRR@10"] == 1.0
    assert rec["Precision@10"] == pytest.approx(0.3)


def test_diffrec_divides_by_all_users():
    scores, truth, exclude, _ = make_problem(6)
    rec = evaluate(scores, truth, exclude=exclude, ks=(5,), convention="recbole")
    dif = evaluate(scores, truth, exclude=exclude, ks=(5,), convention="diffrec")
    n_eval = rec.n_users_evaluated
    assert n_eval < N_USERS
    for name in ("Recall", "Precision", "NDCG", "HitRate", "MRR", "MAP"):
        key = f"{name}@5"
        np.testing.assert_allclose(
            dif.summary[key], rec.summary[key] * n_eval / N_USERS, rtol=1e-12
        )
        np.testing.assert_array_equal(dif.per_user[key], rec.per_user[key])


def test_beyond_accuracy_extremes():
    # Every user gets the same 2 items: coverage 2/5, gini of counts (0, 0, 0, U, U).
    n_users, n_items = 6, 5
    scores = np.tile(np.array([5.0, 4.0, 0.0, 0.0, 0.0], np.float32), (n_users, 1))
    truth = np.ones((n_users, n_items), bool)
    pop = np.array([6, 3, 0, 0, 0])
    r = evaluate(scores, truth, ks=(2,), item_popularity=pop).summary
    assert r["Coverage@2"] == pytest.approx(0.4)
    c = np.array([0, 0, 0, n_users, n_users], float)
    assert r["Gini@2"] == pytest.approx(np.abs(c[:, None] - c).sum() / (2 * 25 * c.mean()))
    assert r["Novelty@2"] == pytest.approx((-np.log2(6 / 6) - np.log2(3 / 6)) / 2)
    assert r["AvgPop@2"] == pytest.approx(4.5)
    # Uniform counts: gini 0; an item with popularity 0 counts as seen once.
    r = evaluate(
        np.eye(n_items, dtype=np.float32),
        np.ones((n_items, n_items), bool),
        ks=(1,),
        item_popularity=np.zeros(n_items),
    ).summary
    assert r["Gini@1"] == 0.0 and r["Coverage@1"] == 1.0
    assert r["Novelty@1"] == pytest.approx(np.log2(n_items))


def test_nan_scores_raise_naming_the_user():
    scores, truth, exclude, _ = make_problem(7)
    evaluated = np.flatnonzero(truth.any(axis=1))
    u = int(evaluated[5])
    bad = scores.copy()
    bad[u, 4] = np.nan
    with pytest.raises(DiffrecError, match=f"user {u} .*item 4"):
        evaluate(bad, truth, exclude=exclude, batch_size=4)
    # NaN in the row of a user without truth is never read.
    unevaluated = int(np.flatnonzero(~truth.any(axis=1))[0])
    bad = scores.copy()
    bad[unevaluated] = np.nan
    evaluate(bad, truth, exclude=exclude)


def test_evaluate_top_items_roundtrip():
    scores, truth, exclude, pop = make_problem(8)
    result = evaluate(
        scores, truth, exclude=exclude, ks=(4, 9), item_popularity=pop, convention="recsys2019"
    )
    again = evaluate_top_items(
        result.top_items,
        sp.csr_array(truth),
        ks=(4, 9),
        item_popularity=pop,
        convention="recsys2019",
    )
    assert again.summary == result.summary


def test_bad_arguments():
    scores, truth, _, _ = make_problem(9)
    with pytest.raises(ConfigError, match="convention"):
        evaluate(scores, truth, convention="RecBole")
    with pytest.raises(ConfigError, match="ks"):
        evaluate(scores, truth, ks=(10, 0))
    with pytest.raises(ConfigError, match="ks"):
        evaluate(scores, truth, ks=())
    with pytest.raises(ConfigError, match="batch_size"):
        evaluate(scores, truth, batch_size=0)
    with pytest.raises(DataError, match="truth has shape"):
        evaluate(scores, truth[:, :-1])
    with pytest.raises(DataError, match="exclude has shape"):
        evaluate(scores, truth, exclude=truth[:-1])
    with pytest.raises(DataError, match="item_popularity"):
        evaluate(scores, truth, item_popularity=np.ones(N_ITEMS - 1))
    with pytest.raises(DataError, match="item_popularity"):
        evaluate(scores, truth, item_popularity=-np.ones(N_ITEMS))
    with pytest.raises(DataError, match="scores"):
        evaluate(scores[0], truth)
    with pytest.raises(DataError, match="columns"):
        evaluate_top_items(np.zeros((N_USERS, 3), np.int32), truth, ks=(5,))
