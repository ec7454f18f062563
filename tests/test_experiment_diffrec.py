"""End to end: the DiffRec / T-DiffRec experiment config, and models with a data transform."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffrec_jax import models, seeds
from diffrec_jax.data.datasets import load_dataset
from diffrec_jax.evaluation import Evaluator
from diffrec_jax.experiment import RunConfig, load_config, run
from diffrec_jax.models import ModelSpec
from diffrec_jax.models.tdiffrec import time_weighted_split
from diffrec_jax.protocol import Recommender

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"


def test_tiny_config_runs_end_to_end(tmp_path):
    config = dataclasses.replace(load_config(CONFIGS / "diffrec_tiny.py"), output_dir=str(tmp_path))
    results, path = run(config, progress=lambda line: None)
    assert json.loads(path.read_text())["summary"] == results["summary"]
    assert [r["model"] for r in results["runs"]] == ["diffrec", "tdiffrec"]
    for r in results["runs"]:
        for part in ("valid", "test"):
            values = np.array([r[part][m] for m in ("Recall@10", "Recall@20", "NDCG@20")])
            assert np.all((values >= 0) & (values <= 1)) and values[1] > 0
        assert r["training"]["epochs"] == 3 and r["training"]["best_epoch"] in (1, 2, 3)
        assert [h["epoch"] for h in r["training"]["history"]] == [1, 2, 3]
    diffrec_run, tdiffrec_run = results["runs"]
    # Final valid figures are those the (single) grid point was evaluated with.
    assert diffrec_run["hparams"]["lr"] == 3e-3
    assert diffrec_run["valid"] == pytest.approx(diffrec_run["grid"][0]["valid"])
    assert tdiffrec_run["hparams"]["w_min"] == 0.5
    assert tdiffrec_run["valid"] == pytest.approx(tdiffrec_run["grid"][0]["valid"])


def test_ml1m_config_has_the_released_hyperparameters():
    config = load_config(CONFIGS / "diffrec_ml1m.py")
    assert config.models == ("diffrec",)
    assert config.dataset.startswith("diffrec:")
    assert Path(config.dataset.split(":", 1)[1]).name == "diffrec-ml-1m_clean"
    hp = {k: v[0] for k, v in config.hparams["diffrec"].items()}
    assert all(len(v) == 1 for v in config.hparams["diffrec"].values())
    model = models.get("diffrec").build(**hp)
    want = dict(lr=1e-3, weight_decay=0.0, dims=(200, 600), emb_size=10, steps=40,
                noise_scale=0.005, noise_min=0.005, noise_max=0.01, batch_size=400)  # fmt: skip
    assert {k: model.hparams[k] for k in want} == want
    assert model.hparams["noise_schedule"] == "linear-var" and model.hparams["mean_type"] == "x0"
    assert model.hparams["sampling_steps"] == 0 and model.hparams["reweight"]
    assert not model.hparams["norm"]


def _weighted_model(seen: list) -> Recommender:
    """A closed-form model with a data transform: scores = rows @ S with a fixed random S."""

    def fit(data, key):
        seen.append(np.array(data.train.csr.data))
        n = data.train.n_items
        return {"s": jax.random.normal(key, (n, n))}

    def score(params, batch):
        return batch.rows @ params["s"]

    return Recommender("weighted", {}, fit, score)


def test_experiment_fits_and_evaluates_on_the_prepared_split(tmp_path, monkeypatch):
    seen = []
    spec = ModelSpec(
        "weighted",
        {},
        make=lambda: _weighted_model(seen),
        prepare=lambda split, hparams: time_weighted_split(split, 0.2, 1.0),
    )
    monkeypatch.setitem(models.REGISTRY, "weighted", spec)
    config = RunConfig(
        models=("weighted",),
        dataset="synthetic-small",
        dataset_options={"n_users": 80, "n_items": 60},
        output_dir=str(tmp_path),
    )
    results, _ = run(config, progress=lambda line: None)
    split = load_dataset("synthetic-small", n_users=80, n_items=60).split
    prepared = time_weighted_split(split, 0.2, 1.0)
    # fit saw the weighted train values ...
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], prepared.train.csr.data)
    # ... and evaluation fed them as input rows.
    params = _weighted_model([]).fit(
        type("D", (), {"train": prepared.train})(),
        seeds.key(0, "fit"),
    )
    score = _weighted_model([]).score
    want = Evaluator(prepared).evaluate(score, params)["test"].summary
    unprepared = Evaluator(split).evaluate(score, params)["test"].summary
    assert results["runs"][0]["test"] == pytest.approx(want)
    assert results["runs"][0]["test"] != pytest.approx(unprepared)
    assert jnp.isfinite(want["NDCG@20"])
