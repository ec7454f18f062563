"""experiments/audit.py end to end on the tiny configuration: a full audit, then a resume."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def _audit(*args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "experiments" / "audit.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _units(out: Path) -> dict[str, object]:
    """Modification times of every saved unit (runs, diagnostics) and the trials of every
    study (run_study rewrites a finished study file, with the same trials)."""
    units: dict[str, object] = {
        str(p.relative_to(out)): p.stat().st_mtime_ns
        for sub in ("runs", "diagnostics")
        for p in (out / sub).rglob("*")
        if p.is_file()
    }
    for p in (out / "studies").glob("*.json"):
        units[p.name] = json.loads(p.read_text())["trials"]
    return units


def test_tiny_audit_runs_reports_and_resumes_without_redoing_work(tmp_path):
    out = tmp_path / "out"
    env = {
        **os.environ,
        # Test speed only: identical computations (a trial and its seed re-runs) compile once.
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    args = (f"--config={REPO / 'experiments' / 'configs' / 'audit_tiny.py'}", f"--output_dir={out}")
    first = _audit(*args, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    for step in range(1, 7):
        assert f"step {step}/6" in first.stdout
    assert "diffrec trial 2/2" in first.stdout and "seed 2 (2/2, trial" in first.stdout

    folder = out / "report-tiny"
    for name in ("report.md", "results.json", "metrics.png", "accuracy_vs_cost.png",
                 "diagnostics_diffrec.png"):  # fmt: skip
        assert (folder / name).is_file(), name
    results = json.loads((folder / "results.json").read_text())
    st = results["statistics"]
    assert st["best_baseline"] == "ease" and st["comparison"]["b"] == "ease"
    assert set(st["verdicts"]) == {"Recall@20", "NDCG@20"}
    for model in ("diffrec", "toppop", "ease"):
        runs = results["runs"][model]
        assert [r["seed"] for r in runs] == [1, 2]
        per_user = np.load(out / "runs" / model / "seed1.per_user.npy")
        assert per_user.shape == (4, 300)
        mean = np.nanmean(per_user[1])  # Recall@20, the recbole mean over users with truth
        assert np.isclose(mean, runs[0]["test"]["Recall@20"])
    diffrec_cost = results["cost"]["diffrec"]
    assert diffrec_cost["train_step_flops"] > 0 and diffrec_cost["score_flops_per_1000_users"] > 0
    assert results["cost"]["ease"]["train_step_flops"] is None
    diag = results["diagnostics"]["diffrec"]
    assert [v["name"] for v in diag["variants"]] == [
        "configured", "single_call", "sampling_noise", "steps_5"
    ]  # fmt: skip
    assert diag["variants"][0]["metrics"]["Recall@20"]["mean"] == runs_seed1(results, "diffrec")
    assert 0 < diag["noise"]["noise_T"] < 1
    report = (folder / "report.md").read_text()
    assert "65 W" in report and "python " in report

    before = _units(out)
    second = _audit(*args, "--power_watts=130", cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert not re.search(r"trial \d+/\d+", second.stdout) and ": training" not in second.stdout
    assert second.stdout.count("skipped") == 3 + 6 + 6  # studies, seed runs, diagnostics
    assert _units(out) == before  # nothing recomputed
    again = json.loads((folder / "results.json").read_text())
    energy = again["cost"]["diffrec"]["energy"]["total"]["kwh"]
    assert np.isclose(energy, 2 * results["cost"]["diffrec"]["energy"]["total"]["kwh"])
    assert "130 W" in (folder / "report.md").read_text()

    bad = _audit(*args, "--seeds=0", cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "--seeds=0" in bad.stderr
    bad = _audit(*args, "--fixed=slim.alpha=1", cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "model 'slim' is not one of the models" in bad.stderr


def runs_seed1(results: dict, model: str) -> float:
    return results["runs"][model][0]["test"]["Recall@20"]
