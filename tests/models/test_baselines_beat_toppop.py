"""Every non-neural baseline learns something: it beats TopPop on held-out synthetic items.

The data are the library's synthetic latent-factor log (so that collaborative signal exists),
split per user at random and evaluated with the library's Evaluator (Recall@20 on test).
"""

from __future__ import annotations

import jax
import pytest

from diffrec_jax import models
from diffrec_jax.data import random_holdout, synthetic_log, to_matrix
from diffrec_jax.evaluation import Evaluator
from diffrec_jax.protocol import FitData

# Small, fast settings; the defaults apart from sizes that must fit the tiny catalogue.
CASES = {
    "itemknn": {},
    "itemknn_asymmetric": {"similarity": "asymmetric", "asymmetric_alpha": 0.3},
    "itemknn_tversky_bm25": {"similarity": "tversky", "feature_weighting": "bm25"},
    "userknn": {},
    "userknn_jaccard_dense": {"similarity": "jaccard", "topk": 200},
    "p3alpha": {},
    "rp3beta": {},
    "slim": {"alpha": 1e-3, "l1_ratio": 0.1},
    "puresvd": {"factors": 16},
    "ials": {"factors": 16, "iterations": 8},
    "ials_cg": {"factors": 16, "iterations": 8, "solver": "cg"},
    "gfcf": {"cutoff": 32},
}


@pytest.fixture(scope="module")
def setup():
    log = synthetic_log(n_users=400, n_items=200, mean_length=20.0, seed=3)
    split = random_holdout(to_matrix(log), (0.7, 0.1, 0.2), seed=0)
    evaluator = Evaluator(split, ks=(20,))
    toppop = models.get("toppop").build()
    params = toppop.fit(FitData(split.train), jax.random.key(0))
    baseline = evaluator.evaluate(toppop.score, params, parts=("test",))["test"]
    return split, evaluator, baseline.summary["Recall@20"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_beats_toppop_on_test_recall(setup, case):
    split, evaluator, toppop_recall = setup
    name = case.split("_")[0]
    model = models.get(name).build(**CASES[case])
    params = model.fit(FitData(split.train, split.valid), jax.random.key(1))
    recall = evaluator.evaluate(model.score, params, parts=("test",))["test"].summary["Recall@20"]
    assert recall > 1.2 * toppop_recall, (case, recall, toppop_recall)
