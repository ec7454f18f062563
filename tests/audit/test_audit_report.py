"""The report folder: markdown tables, PNG plots and results.json from a results dict."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from diffrec_jax import models
from diffrec_jax.audit import AuditConfig, cost, diagnostics, report, stats
from diffrec_jax.results import to_jsonable

METRICS = ("Recall@10", "Recall@20", "NDCG@10", "NDCG@20")
PNG = b"\x89PNG\r\n\x1a\n"


def _results(with_diagnostics: bool = True) -> dict:
    """Results shaped as run_audit returns them, numbers made up, pieces computed by the
    library (tests, verdicts, cost rows, noise levels)."""
    config = AuditConfig(
        name="unit",
        baselines=("toppop", "ease"),
        reported={"Recall@20": 0.30, "NDCG@20": 0.2},
        reported_source="a test",
        seeds=(1, 2, 3),
    )
    rng = np.random.default_rng(0)
    means = {"diffrec": 0.28, "toppop": 0.2, "ease": 0.31}
    summary, per_user, runs = {}, {}, {}
    for model, mu in means.items():
        values = {m: mu + rng.normal(0, 0.01, 3) for m in METRICS}
        runs[model] = values
        summary[model] = {
            "model": model,
            "seeds": [1, 2, 3],
            "valid": {"Recall@20": {"mean": mu, "std": 0.01}},
            "test": {
                m: dict(zip(("mean", "std"), stats.mean_std(v), strict=True))
                for m, v in values.items()
            },  # fmt: skip
        }
        per_user[model] = {m: np.clip(rng.normal(mu, 0.2, 100), 0, 1) for m in METRICS}
    comparison = stats.compare(per_user["diffrec"], per_user["ease"], METRICS)
    comparison.update(a="diffrec", b="ease", seeds=[1, 2, 3])
    assumptions = cost.Assumptions()
    probe = {
        "train_step": {"flops": 1e9, "steps_per_epoch": 10, "note": None, "memory_bytes": 2**24},
        "score": {"flops_per_1000_users": 5e10, "note": None, "memory_bytes": 2**22},
        "inference": {"per_1000_users": 0.4},
        "memory": {"process_peak_rss_bytes": 2**30, "device_peak_bytes": None},
    }
    costs = {
        "diffrec": cost.summarize_cost(
            tuning_seconds=100.0,
            fit_seconds=[10.0, 12.0],
            probe=probe,
            epochs=[20, 30],
            assumptions=assumptions,
        ),  # fmt: skip
        "toppop": cost.summarize_cost(
            tuning_seconds=0.1, fit_seconds=[0.01], probe=None, epochs=None, assumptions=assumptions
        ),
        "ease": cost.summarize_cost(
            tuning_seconds=5.0, fit_seconds=[1.0], probe=None, epochs=None, assumptions=assumptions
        ),
    }
    diag = {}
    if with_diagnostics:
        hp = dict(models.get("diffrec").defaults)
        rows = []
        for i, v in enumerate(diagnostics.variants(hp, (0.5, 1.0))):
            rows.append(
                {
                    **v,
                    "sampling_seeds": 3 if v["stochastic"] else 1,
                    "metrics": {m: {"mean": 0.27 + 0.005 * i, "std": 0.001} for m in METRICS},
                    "jaccard_between_seeds": 0.9 if v["stochastic"] else None,
                    "jaccard_vs_configured": 1.0 - 0.1 * i,
                    "score_flops_per_1000_users": 1e9 * v["denoiser_calls"],
                    "seconds": 1.0,
                }
            )
        diag["diffrec"] = {"noise": diagnostics.noise_level(hp), "k": 20, "variants": rows}
    tuning = {
        m: {"best": {"index": 0, "params": {"lam": 10.0}, "value": 0.3}, "n_trials": 2,
            "n_failed": 0, "tuning_seconds": 1.0}
        for m in means
    }  # fmt: skip
    return to_jsonable(
        {
            "config": dataclasses.asdict(config),
            "command": "python experiments/audit.py --config=x",
            "dataset": {"name": "synthetic", "stats": {"users": 100, "items": 50}},
            "statistics": {
                "summary": summary,
                "best_baseline": "ease",
                "comparison": comparison,
                "verdicts": {
                    m: stats.verdict(v, runs["diffrec"][m]) for m, v in config.reported.items()
                },
            },
            "cost": costs,
            "assumptions": {**dataclasses.asdict(assumptions), "text": assumptions.text()},
            "diagnostics": diag,
            "tuning": tuning,
            "environment": {"time_utc": "now", "jax_backend": "cpu", "devices": ["cpu"]},
        }
    )


@pytest.mark.parametrize("with_diagnostics", [True, False])
def test_report_writes_markdown_plots_and_results(tmp_path, with_diagnostics):
    results = _results(with_diagnostics)
    folder = report.write_report(results, tmp_path / "report")
    names = {p.name for p in folder.iterdir()}
    expected = {"report.md", "results.json", "metrics.png", "accuracy_vs_cost.png"}
    if with_diagnostics:
        expected.add("diagnostics_diffrec.png")
    assert names == expected  # no temporary file left behind
    for name in expected - {"report.md", "results.json"}:
        assert (folder / name).read_bytes()[:8] == PNG
    assert json.loads((folder / "results.json").read_text()) == results
    text = (folder / "report.md").read_text()
    for section in ("## Verdict", "## Accuracy", "## Significance", "## Reproducibility",
                    "## Cost", "## Diffusion diagnostics", "## Tuning"):  # fmt: skip
        assert section in text
    assert "python experiments/audit.py --config=x" in text
    assert "65 W" in text and "475 g CO2e/kWh" in text  # the assumptions, with the figures
    assert "![metrics](metrics.png)" in text
    assert "| Recall@20 | 0.3000 |" in text  # the reported number in the verdict table
    assert "ease (best baseline)" in text and "**diffrec** (audited)" in text
    if with_diagnostics:
        assert "sqrt(1 - alpha_bar_T)" in text and "single denoiser call" in text
    else:
        assert "No diffusion model" in text


def test_report_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "_figure", lambda w, h: None)
    folder = report.write_report(_results(False), tmp_path)
    assert not list(folder.glob("*.png"))
    assert "matplotlib is not installed" in (folder / "report.md").read_text()
