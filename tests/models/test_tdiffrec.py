"""T-DiffRec: time-aware train values against a per-user numpy loop, and the recommender."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diffrec_jax import models
from diffrec_jax.data.datasets import load_dataset
from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.data.split import Split
from diffrec_jax.errors import ConfigError, DataError
from diffrec_jax.models import diffrec as diffrec_model
from diffrec_jax.models.tdiffrec import (
    chronological_rank,
    time_weighted,
    time_weighted_split,
)
from diffrec_jax.protocol import FitData


def random_matrix(seed, n_users=30, n_items=25, timestamps=True, ties=False):
    """Random pattern (some users empty or with one item) with random event times."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        n = int(rng.choice([0, 1, rng.integers(2, n_items)]))
        users += [u] * n
        items += rng.choice(n_items, n, replace=False).tolist()
    users, items = np.array(users), np.array(items)
    times = None
    if timestamps:
        times = rng.integers(0, 5 if ties else 10**6, len(users)).astype(np.float64)
    return InteractionMatrix.from_arrays(users, items, shape=(n_users, n_items), timestamps=times)


def reference_values(m: InteractionMatrix, w_min, w_max, order):
    """The original's construction: a user's items in time order get np.linspace(w_min, w_max)."""
    values = {}
    for u in range(m.n_users):
        lo, hi = m.csr.indptr[u], m.csr.indptr[u + 1]
        cols = m.csr.indices[lo:hi]
        if order == "timestamps":
            # Chronological; equal times keep column order (stable sort of the CSR row).
            chrono = cols[np.argsort(m.timestamps[lo:hi], kind="stable")]
        else:
            chrono = cols
        for item, w in zip(chrono, np.linspace(w_min, w_max, len(chrono)), strict=True):
            values[(u, int(item))] = w
    users, items, _ = m.to_arrays()
    return np.array([values[(u, i)] for u, i in zip(users, items, strict=True)])


@pytest.mark.parametrize(
    ("seed", "ties", "order", "w"),
    [
        (0, False, "timestamps", (0.1, 1.0)),
        (1, True, "timestamps", (0.5, 1.0)),
        (2, False, "csr", (0.2, 0.7)),
        (3, False, "timestamps", (0.3, 0.3)),
    ],
)
def test_time_weighted_matches_per_user_linspace(seed, ties, order, w):
    m = random_matrix(seed, ties=ties, timestamps=order == "timestamps")
    got = time_weighted(m, *w, order=order)
    want = reference_values(m, *w, order)
    assert got.csr.dtype == np.float32
    np.testing.assert_array_equal(got.csr.data, want.astype(np.float32))
    # Same pattern, timestamps and ids.
    np.testing.assert_array_equal(got.csr.indptr, m.csr.indptr)
    np.testing.assert_array_equal(got.csr.indices, m.csr.indices)
    assert got.timestamps is m.timestamps
    # Every user's newest item weighs w_max (or w_min if it is the only one).
    lengths = m.user_lengths()
    for u in np.flatnonzero(lengths):
        row = got.csr.data[m.csr.indptr[u] : m.csr.indptr[u + 1]]
        assert row.max() == np.float32(w[1] if lengths[u] > 1 else w[0])


def test_chronological_rank_is_a_permutation_per_user():
    m = random_matrix(4)
    rank = chronological_rank(m)
    for u in range(m.n_users):
        lo, hi = m.csr.indptr[u], m.csr.indptr[u + 1]
        np.testing.assert_array_equal(np.sort(rank[lo:hi]), np.arange(hi - lo))
        ts = m.timestamps[lo:hi]
        np.testing.assert_array_equal(np.argsort(rank[lo:hi]), np.argsort(ts, kind="stable"))


def test_no_timestamps_needs_an_explicit_order():
    m = random_matrix(5, timestamps=False)
    with pytest.raises(DataError, match="no timestamps.*order='csr'"):
        time_weighted(m, 0.1, 1.0)
    weighted = time_weighted(m, 0.1, 1.0, order="csr")
    np.testing.assert_array_equal(
        weighted.csr.data, reference_values(m, 0.1, 1.0, "csr").astype(np.float32)
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(w_min=0.0, w_max=1.0), "0 < w_min <= w_max"),
        (dict(w_min=0.8, w_max=0.5), "0 < w_min <= w_max"),
        (dict(w_min=0.1, w_max=float("inf")), "finite"),
        (dict(w_min=0.1, w_max=1.0, order="random"), "order 'random'"),
    ],
)
def test_invalid_weights_or_order(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        time_weighted(random_matrix(6), **kwargs)


def test_split_transform_keeps_valid_and_test():
    split = load_dataset("synthetic-small", n_users=60, n_items=40).split
    assert split.train.timestamps is not None  # the synthetic generator has event times
    prepared = time_weighted_split(split, 0.5, 1.0)
    assert isinstance(prepared, Split)
    assert prepared.valid is split.valid and prepared.test is split.test
    assert prepared.name == split.name and "T-DiffRec time weights" in prepared.history[-1]
    np.testing.assert_array_equal(
        prepared.train.csr.data, time_weighted(split.train, 0.5, 1.0).csr.data
    )
    # The binary patterns the evaluator masks with are unchanged.
    assert (prepared.train.binary().csr != split.train.binary().csr).nnz == 0


def test_recommender_and_registry():
    spec = models.get("tdiffrec")
    assert set(spec.defaults) == set(diffrec_model.RECOMMENDER_DEFAULTS) | {
        "w_min",
        "w_max",
        "time_order",
    }
    model = spec.build(w_min=0.5, batch_size=64, dims=(16,))
    assert model.name == "tdiffrec" and model.hparams["w_min"] == 0.5
    assert spec.kind == "trained" and spec.trainable is not None and spec.prepare is not None
    split = load_dataset("synthetic-small", n_users=60, n_items=40).split
    prepared = spec.prepare(split, model.hparams)
    np.testing.assert_array_equal(
        prepared.train.csr.data, time_weighted(split.train, 0.5, 1.0).csr.data
    )
    plan = spec.train_plan(model.hparams, FitData(prepared.train, prepared.valid))
    assert plan is not None and plan.config.batch_size == 64
    # DiffRec itself has no data transform.
    assert models.get("diffrec").prepare is None
    with pytest.raises(ConfigError, match="w_min"):
        spec.build(w_min=2.0, w_max=1.0)
    with pytest.raises(ConfigError, match="time order 'random'"):
        spec.build(time_order="random")
    with pytest.raises(ConfigError, match="no hyperparameter"):
        spec.build(w_middle=0.3)


ML1M = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "diffrec-ml-1m_clean"


def test_diffrec_release_weights_follow_the_file_order():
    """On a DiffRec release the weights are the original data_load's (order of train_list.npy)."""
    if not ML1M.is_dir():
        pytest.skip(f"{ML1M} not found")
    pairs = np.load(ML1M / "train_list.npy", allow_pickle=False)
    # The original: per user, items in file order, np.linspace(w_min, w_max, n_u).
    per_user: dict[int, list[int]] = {}
    for u, i in pairs.tolist():
        per_user.setdefault(u, []).append(i)
    want = {}
    for u, items in per_user.items():
        want.update(zip(((u, i) for i in items), np.linspace(0.1, 1.0, len(items)), strict=True))
    train = load_dataset(f"diffrec:{ML1M}").split.train
    got = time_weighted(train, 0.1, 1.0)
    users, items, values = got.to_arrays()
    expected = np.array([want[(u, i)] for u, i in zip(users.tolist(), items.tolist(), strict=True)])
    np.testing.assert_array_equal(values, expected.astype(np.float32))
