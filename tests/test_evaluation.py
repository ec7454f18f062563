"""The Evaluator: one scoring pass per user batch for valid and test, same metrics as
diffrec_jax.metrics.evaluate on the full score matrices."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.data.split import Split
from diffrec_jax.errors import ConfigError, DiffrecError
from diffrec_jax.evaluation import Evaluator, evaluate_split
from diffrec_jax.metrics import CONVENTIONS, evaluate
from diffrec_jax.protocol import UserBatch

N_USERS, N_ITEMS = 37, 23


def make_split(seed: int = 0) -> Split:
    """Disjoint train/valid/test per user; integer train values 1..5 (so the input rows are not
    just the pattern); some users without valid, without test, or without both."""
    rng = np.random.default_rng(seed)
    part = rng.choice(4, size=(N_USERS, N_ITEMS), p=[0.55, 0.25, 0.1, 0.1])  # 0 = none
    part[rng.random(N_USERS) < 0.15, :] = np.where(part[0] == 2, 0, part[0])  # no valid
    part[3] = np.where(part[3] == 3, 1, part[3])  # user 3: no test
    part[4] = np.where(part[4] >= 2, 1, part[4])  # user 4: neither
    part[5] = 1  # user 5: every item in train (nothing rankable; no truth)

    def matrix(p, values=False):
        u, i = np.nonzero(part == p)
        vals = rng.integers(1, 6, u.size).astype(float) if values else None
        return InteractionMatrix.from_arrays(u, i, shape=(N_USERS, N_ITEMS), values=vals)

    return Split(matrix(1, values=True), matrix(2), matrix(3), name="synthetic")


def make_params(seed: int = 1):
    rng = np.random.default_rng(seed)
    # Integer-valued weights: float32 sums are exact, so scores do not depend on the batch.
    return {
        "w": jnp.asarray(rng.integers(-3, 4, (N_ITEMS, N_ITEMS)).astype(np.float32)),
        "bias": jnp.asarray(rng.integers(0, 3, N_USERS).astype(np.float32)),
    }


def score_fn(params, batch: UserBatch):
    return batch.rows @ params["w"] + params["bias"][batch.users][:, None]


def full_scores(split, params):
    users = np.arange(split.n_users)
    return np.asarray(
        score_fn(
            params,
            UserBatch(jnp.asarray(users, jnp.int32), jnp.asarray(split.train.dense_rows(users))),
        )
    )


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("batch_size", [4, None])
def test_matches_evaluate_on_full_matrices(convention, batch_size):
    split, params = make_split(), make_params()
    ks = (3, 10, N_ITEMS + 5)
    got = Evaluator(split, ks=ks, convention=convention, batch_size=batch_size).evaluate(
        score_fn, params
    )
    assert list(got) == ["valid", "test"]
    scores = full_scores(split, params)
    pop = split.train.item_counts()
    expected = {
        "valid": evaluate(
            scores,
            split.valid.csr,
            exclude=split.train.csr,
            ks=ks,
            convention=convention,
            item_popularity=pop,
        ),
        "test": evaluate(
            scores,
            split.test.csr,
            exclude=split.train.union(split.valid).csr,
            ks=ks,
            convention=convention,
            item_popularity=pop,
        ),
    }
    for part in ("valid", "test"):
        assert got[part].summary == expected[part].summary
        np.testing.assert_array_equal(got[part].top_items, expected[part].top_items)
        for key, values in expected[part].per_user.items():
            np.testing.assert_array_equal(got[part].per_user[key], values)
        assert got[part].n_users_evaluated == expected[part].n_users_evaluated
    # Test lists never contain train or valid items.
    t = got["test"].top_items
    rows, cols = np.nonzero(t >= 0)
    seen = split.train.union(split.valid).csr
    assert not np.asarray(seen[rows, t[rows, cols]]).any()


def test_single_parts_equal_the_joint_pass():
    split, params = make_split(2), make_params(3)
    ev = Evaluator(split, ks=(5,), batch_size=8)
    both = ev.evaluate(score_fn, params)
    for part in ("valid", "test"):
        alone = ev.evaluate(score_fn, params, parts=(part,))
        assert list(alone) == [part]
        assert alone[part].summary == both[part].summary
    assert evaluate_split(score_fn, params, split, ks=(5,))["test"].summary == both["test"].summary


def test_scores_once_per_batch_for_both_parts_and_compiles_once():
    split, params = make_split(4), make_params(5)
    traces, calls, scored = [], [], []

    def counting_score_fn(params, batch):
        traces.append(1)  # runs at trace time only
        jax.debug.callback(lambda u: (calls.append(1), scored.append(np.asarray(u))), batch.users)
        return score_fn(params, batch)

    ev = Evaluator(split, ks=(5, 10), batch_size=6)
    users = ev.users_to_score()
    has_truth = (np.diff(split.valid.csr.indptr) > 0) | (np.diff(split.test.csr.indptr) > 0)
    np.testing.assert_array_equal(users, np.flatnonzero(has_truth))
    assert users.size < split.n_users  # some users are not scored
    n_batches = -(-users.size // 6)
    assert ev.batches() == n_batches
    ev.evaluate(counting_score_fn, params)
    jax.effects_barrier()
    assert len(calls) == n_batches and len(traces) == 1
    # The padding rows repeat a real user; the set of scored users is exactly `users`.
    np.testing.assert_array_equal(np.unique(np.concatenate(scored)), users)
    ev.evaluate(counting_score_fn, make_params(6))  # new values, same shapes: no retrace
    jax.effects_barrier()
    assert len(calls) == 2 * n_batches and len(traces) == 1


def test_nan_scores_name_the_user():
    split, params = make_split(7), make_params()
    ev = Evaluator(split, ks=(5,), batch_size=5)
    victim = int(ev.users_to_score()[7])

    def bad_score_fn(params, batch):
        s = score_fn(params, batch)
        return jnp.where((batch.users == victim)[:, None], jnp.nan, s)

    with pytest.raises(DiffrecError, match=f"user {victim}"):
        ev.evaluate(bad_score_fn, params)


def test_bad_arguments():
    split = make_split()
    with pytest.raises(ConfigError, match="parts"):
        Evaluator(split).evaluate(score_fn, make_params(), parts=("train",))
    with pytest.raises(ConfigError, match="parts"):
        Evaluator(split).evaluate(score_fn, make_params(), parts=())
    with pytest.raises(ConfigError, match="convention"):
        Evaluator(split, convention="nope")
    with pytest.raises(DiffrecError, match="shape"):
        Evaluator(split).evaluate(lambda p, b: b.rows[:, :3], make_params())
