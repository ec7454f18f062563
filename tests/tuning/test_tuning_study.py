"""Studies on synthetic-small: determinism, test isolation, resumption, settings, refits."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.sparse as sp

from diffrec_jax import models as model_zoo
from diffrec_jax.data.datasets import load_dataset
from diffrec_jax.data.split import Split
from diffrec_jax.errors import ConfigError, DataError
from diffrec_jax.evaluation import Evaluator
from diffrec_jax.models import ModelSpec
from diffrec_jax.models.ease import ease
from diffrec_jax.protocol import FitData, Trainable, mean_over_rows
from diffrec_jax.train import plan as train_plan
from diffrec_jax.tuning import (
    StudyConfig,
    best_trial,
    refit_and_test,
    run_study,
    train_plus_valid,
)
from diffrec_jax.tuning.runner import tune_split

EASE_SPACE = {"lam": ("float_log", 1.0, 1e4)}
TIMES = ("fit_seconds", "eval_seconds", "propose_seconds", "seconds", "finished_utc")


@pytest.fixture(scope="module")
def split() -> Split:
    return load_dataset("synthetic-small").split


@pytest.fixture(scope="module")
def data(split) -> FitData:
    return FitData(split.train, split.valid)


def _outcomes(study):
    """The trials without their timings (what must be reproducible)."""
    return [{k: v for k, v in t.items() if k not in TIMES} for t in study["trials"]]


def _pairs(m) -> set[tuple[int, int]]:
    users, items, _ = m.to_arrays()
    return set(zip(users.tolist(), items.tolist(), strict=True))


# -- determinism ----------------------------------------------------------------------------------


def test_random_study_is_deterministic_and_picks_the_best(data):
    config = StudyConfig("ease", EASE_SPACE, budget=4, seed=0)
    a, b = run_study(data, config), run_study(data, config)
    assert _outcomes(a) == _outcomes(b)
    values = [t["value"] for t in a["trials"]]
    assert len(set(values)) == 4 and all(t["state"] == "complete" for t in a["trials"])
    assert a["best"]["index"] == int(np.argmax(values)) and a["complete"]
    assert a["best"]["valid"]["Recall@20"] == max(values)
    assert a["tuning_seconds"] == pytest.approx(sum(t["seconds"] for t in a["trials"]))
    other = run_study(data, StudyConfig("ease", EASE_SPACE, budget=4, seed=1))
    assert [t["params"] for t in other["trials"]] != [t["params"] for t in a["trials"]]


def test_tpe_study_is_deterministic(data):
    pytest.importorskip("optuna")
    config = StudyConfig("ease", EASE_SPACE, budget=5, method="tpe", seed=3, tpe_startup=2)
    a = run_study(data, config)
    assert _outcomes(a) == _outcomes(run_study(data, config))
    other = run_study(data, StudyConfig("ease", EASE_SPACE, budget=5, method="tpe", seed=4))
    assert _outcomes(other) != _outcomes(a)


# -- test isolation -------------------------------------------------------------------------------


@pytest.mark.parametrize("refit", ["train", "train+valid"])
def test_search_never_reads_test_and_the_final_evaluation_reads_it_once(split, monkeypatch, refit):
    reads = []  # one entry per read of the watched split's test attribute

    class WatchedSplit(Split):
        def __getattribute__(self, name):
            if name == "test":
                reads.append(name)
            return super().__getattribute__(name)

    watched = WatchedSplit(split.train, split.valid, split.test, split.name, split.history)
    reads.clear()  # the constructor's own shape check

    fits = []

    def make_spy(lam=100.0):
        inner = ease(lam=lam)

        def fit(fit_data, key):
            fits.append(fit_data)
            return inner.fit(fit_data, key)

        return inner._replace(name="spy", fit=fit)

    monkeypatch.setitem(model_zoo.REGISTRY, "spy", ModelSpec("spy", {"lam": 100.0}, make=make_spy))
    calls = []  # (parts, test entries of the evaluator, test reads so far)
    real_evaluate = Evaluator.evaluate

    def recording_evaluate(self, score_fn, params, parts=("valid", "test")):
        calls.append((tuple(parts), self._truth["test"].nnz, len(reads)))
        return real_evaluate(self, score_fn, params, parts)

    monkeypatch.setattr(Evaluator, "evaluate", recording_evaluate)
    lines = []
    (entry,) = tune_split(
        watched,
        [StudyConfig("spy", EASE_SPACE, budget=3)],
        refit=refit,
        progress=lambda line: lines.append((line, len(reads))),
    )

    assert [n for line, n in lines if "trial" in line and "chose" not in line] == [0, 0, 0]
    assert len(reads) == 1  # the final evaluation's evaluator, once
    *search_calls, final_call = calls
    assert len(search_calls) == 3
    assert all(parts == ("valid",) and n_test == 0 for parts, n_test, _ in search_calls)
    assert final_call[0] == (("valid", "test") if refit == "train" else ("test",))
    assert final_call[1] == split.test.nnz and final_call[2] == 1
    test_pairs = _pairs(split.test)
    assert len(fits) == 4
    for fit_data in fits:
        assert not _pairs(fit_data.train) & test_pairs
        assert fit_data.valid is None or not _pairs(fit_data.valid) & test_pairs
    if refit == "train+valid":
        assert _pairs(fits[-1].train) == _pairs(split.train) | _pairs(split.valid)
        assert fits[-1].valid is None
    assert entry["refit"]["test"]["Recall@20"] > 0


# -- persistence and resumption -------------------------------------------------------------------


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_interrupted_study_resumes_to_the_uninterrupted_result(data, tmp_path, method):
    if method == "tpe":
        pytest.importorskip("optuna")
    config = StudyConfig("ease", EASE_SPACE, budget=5, method=method, seed=7, tpe_startup=2)
    whole = run_study(data, config, path=tmp_path / "whole.json")

    path = tmp_path / "study.json"

    def stop_after_two(trial):
        if trial["index"] == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_study(data, config, path=path, on_trial=stop_after_two)
    saved = json.loads(path.read_text())
    assert len(saved["trials"]) == 2 and not saved["complete"]

    lines = []
    resumed = run_study(data, config, path=path, progress=lines.append)
    assert len(lines) == 3  # only the three missing trials ran
    assert resumed["trials"][:2] == saved["trials"]  # finished trials kept as they were
    assert _outcomes(resumed) == _outcomes(whole)
    assert resumed["best"] == whole["best"] and resumed["complete"]
    assert [s["trials_run"] for s in resumed["sessions"]] == [2, 3]
    assert json.loads(path.read_text()) == json.loads(json.dumps(resumed))


def test_budget_can_grow_and_shrink(data, tmp_path):
    path = tmp_path / "study.json"
    whole = run_study(data, StudyConfig("ease", EASE_SPACE, budget=5, seed=2))
    run_study(data, StudyConfig("ease", EASE_SPACE, budget=2, seed=2), path=path)
    grown = run_study(data, StudyConfig("ease", EASE_SPACE, budget=5, seed=2), path=path)
    assert _outcomes(grown) == _outcomes(whole)
    lines = []
    shrunk = run_study(
        data, StudyConfig("ease", EASE_SPACE, budget=3, seed=2), path=path, progress=lines.append
    )
    assert not lines and len(shrunk["trials"]) == 5  # nothing run, nothing deleted
    first3 = [t["value"] for t in shrunk["trials"][:3]]
    assert shrunk["best"]["index"] == int(np.argmax(first3)) and shrunk["budget"] == 3


@pytest.mark.parametrize(
    "change, field",
    [
        ({"seed": 1}, "seed"),
        ({"space": {"lam": ("float_log", 1.0, 1e3)}}, "space"),
        ({"select_metric": "NDCG@20"}, "select_metric"),
        ({"ks": (5, 20)}, "ks"),
        ({"method": "tpe"}, "method"),
        ({"model": "toppop", "space": {}}, "model"),
    ],
)
def test_settings_mismatch_raises(data, tmp_path, change, field):
    if change.get("method") == "tpe":
        pytest.importorskip("optuna")
    path = tmp_path / "study.json"
    base = dict(model="ease", space=EASE_SPACE, budget=2, seed=0)
    run_study(data, StudyConfig(**base), path=path)
    with pytest.raises(ConfigError, match=rf"was run with {field}="):
        run_study(data, StudyConfig(**{**base, **change}), path=path)


def test_dataset_mismatch_raises(split, data, tmp_path):
    path = tmp_path / "study.json"
    config = StudyConfig("ease", EASE_SPACE, budget=1)
    first = run_study(data, config, dataset="synthetic-small", path=path)
    # The same data under another id (a dataset path in a moved checkout) resumes the study.
    again = run_study(data, config, dataset="/elsewhere/synthetic-small", path=path)
    assert again["trials"] == first["trials"]
    # Same id, other data: the fingerprint differs.
    other = FitData(split.train, split.test)
    with pytest.raises(ConfigError, match="was run with dataset="):
        run_study(other, config, dataset="synthetic-small", path=path)


def test_tampered_or_foreign_study_files_are_refused(data, tmp_path):
    path = tmp_path / "study.json"
    config = StudyConfig("ease", EASE_SPACE, budget=2)
    run_study(data, config, path=path)
    record = json.loads(path.read_text())
    record["trials"][1]["params"]["lam"] = 3.0
    path.write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="seed 0 proposes"):
        run_study(data, config, path=path)
    path.write_text("{not json")
    with pytest.raises(DataError, match="cannot read the study file"):
        run_study(data, config, path=path)
    path.write_text(json.dumps({"trials": []}))
    with pytest.raises(DataError, match="not a study file"):
        run_study(data, config, path=path)


# -- trial outcomes -------------------------------------------------------------------------------


def test_failed_trials_are_recorded_and_skipped(data):
    # lam <= 0 is invalid for EASE: those trials fail, the others are compared.
    study = run_study(data, StudyConfig("ease", {"lam": ("float", -50.0, 100.0)}, budget=6))
    states = [t["state"] for t in study["trials"]]
    assert "failed" in states and "complete" in states
    for t in study["trials"]:
        if t["state"] == "failed":
            assert t["params"]["lam"] <= 0 and "lam" in t["error"] and t["value"] is None
        else:
            assert t["params"]["lam"] > 0 and t["value"] is not None
    done = [t for t in study["trials"] if t["state"] == "complete"]
    assert study["best"]["index"] == max(done, key=lambda t: t["value"])["index"]


def test_a_study_where_every_trial_fails_has_no_choice(split, data):
    config = StudyConfig("ease", {"lam": ("float", -2.0, -1.0)}, budget=2)
    study = run_study(data, config)
    assert study["best"] is None
    with pytest.raises(ConfigError, match="no trial of ease finished"):
        refit_and_test(split, config, study)


def test_repeated_closed_form_configurations_are_not_refit(data):
    config = StudyConfig("ease", {"lam": ("categorical", [10.0, 300.0])}, budget=5)
    study = run_study(data, config)
    first = {}
    for t in study["trials"]:
        key = t["params"]["lam"]
        if key in first:
            assert t["state"] == "duplicate" and t["duplicate_of"] == first[key]["index"]
            assert t["valid"] == first[key]["valid"] and t["fit_seconds"] is None
        else:
            assert t["state"] == "complete"
            first[key] = t
    assert len(first) == 2  # with 5 draws from 2 choices (seed 0) both occur


def test_empty_space_runs_one_trial(data):
    study = run_study(data, StudyConfig("toppop", {}, budget=10))
    assert len(study["trials"]) == 1 and study["best"]["index"] == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(space={"alpha": ("float", 0, 1)}), r"no hyperparameter\(s\) \['alpha'\]"),
        (dict(fixed={"lam": 3.0}), "both searched and fixed"),
        (dict(method="grid"), "method='grid'"),
        (dict(budget=0), "budget=0"),
        (dict(select_metric="Recall@50"), "select_metric='Recall@50'"),
        (dict(seed=-1), "seed=-1"),
    ],
)
def test_study_config_rejects(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        StudyConfig(**{"model": "ease", "space": EASE_SPACE, **kwargs})


def test_study_needs_validation_data(split):
    no_entries = type(split.valid)(sp.csr_array(split.valid.shape, dtype=np.float32))
    for valid in (None, no_entries):
        with pytest.raises(ConfigError, match="validation"):
            run_study(FitData(split.train, valid), StudyConfig("ease", EASE_SPACE, budget=1))


# -- refits ---------------------------------------------------------------------------------------


def test_refit_on_train_reproduces_the_chosen_trial(split, data):
    config = StudyConfig("ease", EASE_SPACE, budget=3)
    study = run_study(data, config)
    final = refit_and_test(split, config, study, refit="train")
    assert final["index"] == study["best"]["index"] and final["params"] == study["best"]["params"]
    assert final["valid"] == pytest.approx(study["best"]["valid"])
    assert set(final["test"]) >= {"Recall@10", "Recall@20", "NDCG@10", "NDCG@20"}


def test_train_plus_valid_is_the_union_with_values_and_timestamps(split):
    merged = train_plus_valid(split)
    np.testing.assert_array_equal(
        merged.csr.toarray(), split.train.csr.toarray() + split.valid.csr.toarray()
    )
    assert split.train.timestamps is not None
    stamps = {}
    for m in (split.train, split.valid):
        users, items, _ = m.to_arrays()
        stamps.update(zip(zip(users, items, strict=True), m.timestamps, strict=True))
    users, items, _ = merged.to_arrays()
    assert [stamps[p] for p in zip(users, items, strict=True)] == merged.timestamps.tolist()
    with pytest.raises(DataError, match="cannot merge train and valid"):
        train_plus_valid(Split(split.train, split.train, split.test))


def _numpy_ease_test_metrics(split, lam: float, k: int) -> dict[str, float]:
    """EASE fit on train+valid in float64; test ranked with train+valid excluded (RecBole)."""
    x = split.train.csr.toarray().astype(np.float64) + split.valid.csr.toarray()
    p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    scores = np.where(x > 0, -np.inf, x @ b)
    test = split.test.csr.toarray() > 0
    recall, ndcg = [], []
    for u in np.flatnonzero(test.sum(axis=1)):
        top = np.argsort(-scores[u], kind="stable")[:k]
        hits = test[u, top].astype(np.float64)
        n = test[u].sum()
        recall.append(hits.sum() / n)
        discounts = 1.0 / np.log2(np.arange(2, k + 2))
        ndcg.append((hits * discounts).sum() / discounts[: min(n, k)].sum())
    return {f"Recall@{k}": float(np.mean(recall)), f"NDCG@{k}": float(np.mean(ndcg))}


def test_refit_on_train_plus_valid_matches_a_numpy_reference(split, data):
    config = StudyConfig("ease", EASE_SPACE, budget=3)
    study = run_study(data, config)
    final = refit_and_test(split, config, study, refit="train+valid")
    assert final["valid"] is None and final["refit"] == "train+valid"
    expected = _numpy_ease_test_metrics(split, final["hparams"]["lam"], 20)
    # float32 vs float64 scores may swap a near tie at the cut-off: one swap moves a user's
    # recall by <= 1/|test items| and the mean by <= 1 / (300 users).
    for name, value in expected.items():
        assert final["test"][name] == pytest.approx(value, abs=3e-3)


# -- gradient-trained models ----------------------------------------------------------------------


def _linear_score(params, batch):
    return batch.rows @ params["w"]


def _linear_loss(params, model_state, batch, key, info):
    nll = -jnp.sum(jax.nn.log_softmax(_linear_score(params, batch)) * batch.rows, axis=1)
    return mean_over_rows(nll, batch), (model_state, {})


def linear_trainable(lr: float = 1e-2) -> Trainable:
    """A tiny gradient-trained item-item model (softmax likelihood)."""

    def init(key, n_items):
        return {"w": 0.01 * jax.random.normal(key, (n_items, n_items))}, ()

    return Trainable(init, _linear_loss, _linear_score, lambda: optax.adam(lr))


LINEAR = ModelSpec(
    "linear",
    {"lr": 1e-2, "batch_size": 100, "max_epochs": 4, "eval_every": 1, "patience": None},
    kind="trained",
    trainable=linear_trainable,
)
"""Validated every epoch, never stopped early."""


def test_trained_model_early_stops_on_valid_and_refits_for_the_best_epoch(split, data, monkeypatch):
    monkeypatch.setitem(model_zoo.REGISTRY, "linear", LINEAR)
    configs = []  # the TrainConfig of every training run
    real_train = train_plan.train

    def recording_train(trainable, data, config, **kwargs):
        configs.append(config)
        return real_train(trainable, data, config, **kwargs)

    monkeypatch.setattr(train_plan, "train", recording_train)
    config = StudyConfig(
        "linear", {"lr": ("float_log", 1e-3, 0.3)}, budget=2, select_metric="NDCG@20"
    )
    study = run_study(data, config)
    # The study's metric reached the early stopping of every trial.
    assert [c.select_metric for c in configs] == ["NDCG@20", "NDCG@20"]
    for t in study["trials"]:
        assert t["training"]["epochs"] == 4 and 1 <= t["training"]["best_epoch"] <= 4
        # The trial's value is the validation metric of the best epoch's parameters.
        assert t["value"] == pytest.approx(t["training"]["best_valid"]["NDCG@20"])
    final = refit_and_test(split, config, study, refit="train+valid")
    best_epoch = study["best"]["training"]["best_epoch"]
    assert final["training"]["epochs"] == best_epoch and final["training"]["best_epoch"] is None
    again = refit_and_test(split, config, study, refit="train")
    assert again["valid"]["NDCG@20"] == pytest.approx(study["best"]["value"], rel=1e-5)


def test_a_nan_trial_is_never_chosen():
    """A NaN (or infinite) value, e.g. from an edited study file, never wins."""
    trials = [
        {"index": 0, "value": float("nan")},
        {"index": 1, "value": 0.2},
        {"index": 2, "value": float("inf")},
        {"index": 3, "value": 0.3},
        {"index": 4, "value": None},
    ]
    assert best_trial(trials)["index"] == 3
    assert best_trial([{"index": 0, "value": float("nan")}]) is None
