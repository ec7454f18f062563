"""The audit of a sequential diffusion model (ADRec vs SASRec+ on synthetic sequences, tiny
configurations): tuning on train sequences and valid items, seed re-runs on the test items,
per-user statistics, costs and a report; mixed row/sequential audits are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffrec_jax.audit import AuditConfig, load_config, run_audit, scaled
from diffrec_jax.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
COMMON = {
    "d": 16,
    "n_heads": 2,
    "max_len": 20,
    "batch_size": 256,
    "eval_every": 1,
    "dropout": 0.0,
    "emb_dropout": 0.0,
    "pack_ratio": 0.0,  # one compiled branch (packing: tests/models/test_packing.py)
}
TINY = {
    "adrec": {
        **COMMON,
        "encoder_blocks": 1,
        "denoiser_blocks": 1,
        "steps": 5,
        "pretrain_epochs": 1,
        "freeze_epochs": 1,
        "max_epochs": 1,
    },
    "sasrec+": {**COMMON, "n_blocks": 1, "max_epochs": 1},
}


def test_sequential_audit_tunes_reruns_compares_and_reports(tmp_path):
    config = AuditConfig(
        name="seq-tiny",
        dataset="synthetic-sequences",
        target="adrec",
        baselines=("sasrec+",),
        reported={"HitRate@20": 0.3},
        reported_source="made-up number (synthetic data)",
        spaces={m: {"lr": ("float_log", 1e-3, 1e-2)} for m in TINY},
        fixed=TINY,
        budget=1,
        method="random",
        seeds=(1, 2),
        select_metric="NDCG@20",
        ks=(10, 20),
        metrics=("HitRate@20", "NDCG@20"),
        output_dir=str(tmp_path),
    )
    results, folder = run_audit(config, progress=lambda line: None)
    summary = results["statistics"]["summary"]
    assert set(summary) == {"adrec", "sasrec+"}
    for model in summary:
        assert 0 < summary[model]["test"]["HitRate@20"]["mean"] <= 1
    comparison = results["statistics"]["comparison"]
    assert comparison["a"] == "adrec" and comparison["b"] == "sasrec+"
    assert set(comparison["metrics"]) == {"HitRate@20", "NDCG@20"}
    assert set(results["statistics"]["verdicts"]) == {"HitRate@20"}
    cost = results["cost"]["adrec"]
    assert cost["inference_seconds_per_1000_users"] > 0
    assert results["cost"]["sasrec+"]["train_step_flops"] > 0
    report = (folder / "report.md").read_text()
    assert "not one of them" in report  # no DiffRec-family diagnostics for ADRec
    on_disk = json.loads((folder / "results.json").read_text())
    assert on_disk["statistics"]["best_baseline"] == "sasrec+"
    assert "leave-one-out" in on_disk["evaluation"]["protocol"]


def test_mixed_row_and_sequential_audits_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="one protocol"):
        AuditConfig(
            name="mixed",
            dataset="synthetic-sequences",
            target="adrec",
            baselines=("toppop",),
            output_dir=str(tmp_path),
        ).check()


def test_beauty_config_loads_and_its_smoke_version_caps_every_stage():
    config = scaled(
        load_config(REPO / "experiments" / "configs" / "audit_adrec_beauty.py"), smoke=True
    )
    assert config.target == "adrec" and config.budget == 2 and config.seeds == (1, 2)
    capped = config.fixed_with_cap()["adrec"]
    assert capped["pretrain_epochs"] == capped["freeze_epochs"] == capped["max_epochs"] == 2
