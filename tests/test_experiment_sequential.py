"""End to end: the experiment runner on a sequential model (SASRec+ on synthetic sequences)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffrec_jax.errors import ConfigError
from diffrec_jax.experiment import RunConfig, run

TINY = {
    "max_epochs": [2],
    "eval_every": [1],
    "d": [16],
    "n_heads": [2],
    "n_blocks": [1],
    "max_len": [20],
    "batch_size": [256],
    "lr": [5e-3],
    "dropout": [0.0],  # no dropout: a faster compile (the runner is under test here)
    "emb_dropout": [0.0],
    "pack_ratio": [0.0],  # one compiled branch (packing: tests/models/test_packing.py)
}


def test_sasrec_plus_runs_end_to_end(tmp_path):
    config = RunConfig(
        models=("sasrec+",),
        dataset="synthetic-sequences",
        ks=(5, 10, 20),
        select_metric="NDCG@10",
        hparams={"sasrec+": TINY},
        output_dir=str(tmp_path),
    )
    results, path = run(config, progress=lambda line: None)
    on_disk = json.loads(path.read_text())
    assert on_disk["summary"] == results["summary"]
    (r,) = on_disk["runs"]
    assert r["model"] == "sasrec+" and r["hparams"]["max_len"] == 20 and r["hparams"]["d"] == 16
    for part in ("valid", "test"):
        values = np.array([r[part][f"{m}@{k}"] for m in ("HitRate", "NDCG") for k in (5, 10, 20)])
        assert np.all((values >= 0) & (values <= 1))
        assert r[part]["HitRate@20"] >= r[part]["HitRate@10"] >= r[part]["HitRate@5"]
        assert r[part]["Recall@10"] == pytest.approx(r[part]["HitRate@10"])  # one target
    assert r["test"]["HitRate@10"] > 0
    assert r["training"]["epochs"] == 2 and r["training"]["best_epoch"] in (1, 2)
    assert r["valid"] == pytest.approx(r["grid"][0]["valid"])
    assert "history items not excluded" in on_disk["evaluation"]["sequential_protocol"]


def test_sequential_model_needs_a_sequence_dataset(tmp_path):
    config = RunConfig(
        models=("sasrec+",),
        dataset="synthetic-small",
        hparams={"sasrec+": TINY},
        output_dir=str(tmp_path),
    )
    with pytest.raises(ConfigError, match="sequential model"):
        run(config, progress=lambda line: None)
