"""SequenceEvaluator: leave-one-out inputs, hand-checked HR/NDCG, history exclusion."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from diffrec_jax.data.sequences import SequenceDataset
from diffrec_jax.errors import ConfigError, DiffrecError
from diffrec_jax.evaluation import SequenceEvaluator
from diffrec_jax.protocol import SeqBatch, SeqFitData

N_ITEMS = 5
# user: full sequence -> train (= valid history), valid target, test target
#   u0: [0, 1, 2, 3]     train [0, 1],    valid 2, test 3
#   u1: [4, 3, 2, 1, 0]  train [4, 3, 2], valid 1, test 0
#   u2: [1, 2, 4]        train [1],       valid 2, test 4
SEQS = [[0, 1, 2, 3], [4, 3, 2, 1, 0], [1, 2, 4]]
# A score table per user (ties rank the lower index first):
#   u0 ranks 0 1 2 3 4, u1 ranks 4 3 2 1 0, u2 ranks 2 4 0 1 3
TABLE = np.array(
    [[5, 4, 3, 2, 1], [1, 2, 3, 4, 5], [0, 0, 5, 0, 1]],
    np.float32,
)


def _split():
    offsets = np.r_[0, np.cumsum([len(s) for s in SEQS])]
    return SequenceDataset(offsets, np.concatenate(SEQS), N_ITEMS).leave_one_out()


def table_score(params, batch: SeqBatch):
    return params[batch.users]


def ndcg(ranks, k):
    return np.mean([1 / math.log2(r + 1) if r <= k else 0.0 for r in ranks])


def hr(ranks, k):
    return np.mean([r <= k for r in ranks])


def _check(summary, ranks, ks=(1, 3)):
    for k in ks:
        assert summary[f"HitRate@{k}"] == pytest.approx(hr(ranks, k))
        assert summary[f"Recall@{k}"] == pytest.approx(hr(ranks, k))  # one target
        assert summary[f"NDCG@{k}"] == pytest.approx(ndcg(ranks, k))


def test_inputs_are_the_leave_one_out_histories():
    split = _split()
    ev = SequenceEvaluator.from_split(split, 3)
    np.testing.assert_array_equal(ev.inputs["valid"][0], [[5, 0, 1], [4, 3, 2], [5, 5, 1]])
    np.testing.assert_array_equal(ev.inputs["test"][0], [[0, 1, 2], [3, 2, 1], [5, 1, 2]])
    np.testing.assert_array_equal(ev.inputs["valid"][1].indices, [2, 1, 2])
    np.testing.assert_array_equal(ev.inputs["test"][1].indices, [3, 0, 4])


def test_hit_rate_and_ndcg_by_hand():
    ev = SequenceEvaluator.from_split(_split(), 3, ks=(1, 3))
    res = ev.evaluate(table_score, jnp.asarray(TABLE))
    # valid targets 2, 1, 2 rank 3, 4, 1; test targets 3, 0, 4 rank 4, 5, 2
    _check(res["valid"].summary, [3, 4, 1])
    _check(res["test"].summary, [4, 5, 2])
    assert res["valid"].summary["NDCG@3"] == pytest.approx((0.5 + 1) / 3)
    assert res["test"].summary["HitRate@3"] == pytest.approx(1 / 3)


def test_exclude_history():
    ev = SequenceEvaluator.from_split(_split(), 3, ks=(1, 3), exclude_history=True)
    res = ev.evaluate(table_score, jnp.asarray(TABLE))
    # valid: u0 drops 0 1 -> 2 first; u1 drops 4 3 2 -> 1 first; u2 drops 1 -> 2 first
    _check(res["valid"].summary, [1, 1, 1])
    # test (histories cut to 3 items): u0 drops 0 1 2 -> 3 first; u1 drops 3 2 1 (not 4,
    # which fell out of the window) -> 4 then 0: rank 2; u2 drops 1 2 -> 4 first
    _check(res["test"].summary, [1, 2, 1])
    # history items never appear in the top lists
    top = res["test"].top_items
    for u, hist in enumerate(ev.inputs["test"][0]):
        assert not set(top[u]) & set(hist[hist < N_ITEMS])


def test_history_dependent_scores():
    """A "next item = last item + 1" model sees the right histories."""

    def successor(params, batch):
        last = batch.history[:, -1]
        return -(((jnp.arange(N_ITEMS)[None, :] - last[:, None] - 1) % N_ITEMS).astype(float))

    res = SequenceEvaluator.from_split(_split(), 2, ks=(1,)).evaluate(successor, None)
    # valid: last 1 -> 2 (hit), last 2 -> 3 (target 1), last 1 -> 2 (hit)
    assert res["valid"].summary["HitRate@1"] == pytest.approx(2 / 3)
    # test: last 2 -> 3 (hit), last 1 -> 2 (target 0), last 2 -> 3 (target 4)
    assert res["test"].summary["HitRate@1"] == pytest.approx(1 / 3)


def test_results_do_not_depend_on_the_batch_size():
    split = _split()
    a = SequenceEvaluator.from_split(split, 3).evaluate(table_score, jnp.asarray(TABLE))
    b = SequenceEvaluator.from_split(split, 3, batch_size=2).evaluate(
        table_score, jnp.asarray(TABLE)
    )
    for part in ("valid", "test"):
        assert a[part].summary == pytest.approx(b[part].summary)
        np.testing.assert_array_equal(a[part].top_items, b[part].top_items)


def test_from_fit_data_has_only_valid():
    split = _split()
    fit_ev = SequenceEvaluator.from_fit_data(SeqFitData.from_split(split), 3, ks=(1, 3))
    assert set(fit_ev.inputs) == {"valid"}
    got = fit_ev.evaluate(table_score, jnp.asarray(TABLE), parts=("valid",))
    assert set(got) == {"valid"}
    full = SequenceEvaluator.from_split(split, 3, ks=(1, 3)).evaluate(
        table_score, jnp.asarray(TABLE), parts="valid"
    )
    assert got["valid"].summary == pytest.approx(full["valid"].summary)
    with pytest.raises(ConfigError, match="from_split"):
        fit_ev.evaluate(table_score, jnp.asarray(TABLE))  # default parts include test
    with pytest.raises(ConfigError, match="valid_targets is None"):
        SequenceEvaluator.from_fit_data(SeqFitData(split.train), 3)


def test_bad_scores_raise():
    ev = SequenceEvaluator.from_split(_split(), 3)

    def nan_for_user_1(params, batch):
        return jnp.where(batch.users[:, None] == 1, jnp.nan, params[batch.users])

    with pytest.raises(DiffrecError, match="NaN scores for user 1"):
        ev.evaluate(nan_for_user_1, jnp.asarray(TABLE))
    with pytest.raises(DiffrecError, match="expected"):
        ev.evaluate(lambda p, b: jnp.zeros((b.history.shape[0], N_ITEMS + 1)), None)


def test_bad_options_raise():
    split = _split()
    with pytest.raises(ConfigError, match="exclude_history"):
        SequenceEvaluator.from_split(split, 3, exclude_history="yes")
    with pytest.raises(ConfigError, match="part 'train'"):
        SequenceEvaluator({"train": (np.zeros((1, 2)), np.zeros(1))}, N_ITEMS)
    with pytest.raises(ConfigError, match="targets"):
        SequenceEvaluator({"valid": (np.zeros((2, 2)), np.zeros(3))}, N_ITEMS)
