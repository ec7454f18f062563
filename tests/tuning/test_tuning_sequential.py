"""Tuning sequential models: the search sees train sequences and valid items only; the refit
reproduces the chosen trial and reads the test items once; the tune runner mixes row and
sequential models on one sequence dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffrec_jax.data.datasets import load_dataset
from diffrec_jax.errors import ConfigError
from diffrec_jax.protocol import FitData, SeqFitData
from diffrec_jax.tuning import StudyConfig, refit_and_test, run_study
from diffrec_jax.tuning.runner import TuneConfig, tune

TINY = {
    "max_epochs": 2,
    "eval_every": 1,
    "d": 16,
    "n_heads": 2,
    "n_blocks": 1,
    "max_len": 20,
    "batch_size": 256,
    "dropout": 0.0,
    "emb_dropout": 0.0,
    "pack_ratio": 0.0,  # one compiled branch (packing: tests/models/test_packing.py)
}
SPACE = {"lr": ("float_log", 1e-3, 1e-2)}


@pytest.fixture(scope="module")
def dataset():
    return load_dataset("synthetic-sequences")


def _config(**kw):
    return StudyConfig(
        "sasrec+", **{"space": SPACE, "fixed": TINY, "budget": 2, "method": "random", **kw}
    )


def test_search_sees_train_and_valid_items_only_and_refit_reproduces_it(dataset):
    sequences = dataset.extras["sequences"]
    data = SeqFitData.from_split(sequences)
    assert set(data._fields) == {"train", "valid_targets", "side"}  # no test anywhere
    assert not data.side
    study = run_study(data, _config(), dataset="synthetic-sequences")
    trials = study["trials"]
    assert [t["state"] for t in trials] == ["complete", "complete"]
    for t in trials:
        assert t["valid"]["Recall@20"] == pytest.approx(t["valid"]["HitRate@20"])
        assert t["training"]["epochs"] == 2
    best = study["best"]
    assert best["value"] == max(t["value"] for t in trials)

    final = refit_and_test(sequences, _config(), study)
    assert final["valid"] == pytest.approx(best["valid"], rel=1e-5, abs=1e-6)
    values = np.array([final["test"][f"{m}@{k}"] for m in ("HitRate", "NDCG") for k in (10, 20)])
    assert np.all((values >= 0) & (values <= 1)) and final["test"]["HitRate@20"] > 0


def test_wrong_data_kind_and_train_plus_valid_are_refused(dataset):
    sequences = dataset.extras["sequences"]
    split = dataset.split
    with pytest.raises(ConfigError, match="takes sequences"):
        run_study(FitData(split.train, split.valid), _config())
    with pytest.raises(ConfigError, match="takes interaction rows"):
        run_study(SeqFitData.from_split(sequences), StudyConfig("toppop", budget=1))
    with pytest.raises(ConfigError, match="validation items"):
        run_study(SeqFitData(sequences.train, None), _config())
    study = run_study(SeqFitData.from_split(sequences), _config(budget=1))
    with pytest.raises(ConfigError, match="only 'train'"):
        refit_and_test(sequences, _config(), study, refit="train+valid")


def test_tune_runner_mixes_row_and_sequential_models(tmp_path):
    config = TuneConfig(
        models=("toppop", "sasrec+"),
        dataset="synthetic-sequences",
        budget=2,
        spaces={"sasrec+": SPACE},
        fixed={"sasrec+": {k: v for k, v in TINY.items() if k not in SPACE}},
        output_dir=str(tmp_path),
    )
    results, path = tune(config, progress=lambda line: None)
    on_disk = json.loads(path.read_text())
    assert [e["model"] for e in on_disk["models"]] == ["toppop", "sasrec+"]
    seq = on_disk["models"][1]
    assert seq["n_trials"] == 2 and seq["refit"]["test"]["HitRate@20"] > 0
    assert "leave-one-out" in on_disk["evaluation"]["protocol"]
    # the same command resumes the finished studies
    again, _ = tune(config, progress=lambda line: None)
    assert again["models"][1]["best"] == results["models"][1]["best"]
    with pytest.raises(ConfigError, match="only 'train' is supported"):
        tune(
            TuneConfig(**{**config.__dict__, "refit": "train+valid"}),
            progress=lambda line: None,
        )
