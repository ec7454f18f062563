"""The experiment runner and its absl-flag script, end to end on a tiny dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from diffrec_jax import seeds
from diffrec_jax.data.sequences import SequenceDataset
from diffrec_jax.errors import ConfigError
from diffrec_jax.experiment import (
    RunConfig,
    fit,
    format_table,
    grid,
    merge_results,
    parse_hparams,
    read_results,
    results_name,
    run,
    summarize,
)
from diffrec_jax.models import ModelSpec
from diffrec_jax.protocol import SeqFitData

REPO = Path(__file__).resolve().parents[1]


def test_parse_hparams_types_and_targets():
    hp = parse_hparams(["ease.lam=7"], ["toppop", "ease"])
    assert hp == {"toppop": {}, "ease": {"lam": [7.0]}}
    assert parse_hparams(["lam=1,2.5"], ["ease"]) == {"ease": {"lam": [1.0, 2.5]}}
    # A second flag for one hyperparameter of a model is refused (it used to replace the first).
    with pytest.raises(ConfigError, match=r"--hp='ease.lam=7'.*already set by --hp='lam=1,2.5'"):
        parse_hparams(["lam=1,2.5", "ease.lam=7"], ["toppop", "ease"])


@pytest.mark.parametrize(
    "flag, match",
    [
        ("lam", "expected name=value"),
        ("lam=", "expected name=value"),
        ("alpha=1", "no model"),
        ("ease.lam=abc", "cannot read 'abc' as float"),
        ("knn.topk=5", "is not one of the models"),
    ],
)
def test_parse_hparams_rejects_bad_flags(flag, match):
    with pytest.raises(ConfigError, match=match):
        parse_hparams([flag], ["toppop", "ease"])


def test_grid_is_cartesian_and_ordered():
    assert grid({"b": [1, 2], "a": ["x"]}) == [{"a": "x", "b": 1}, {"a": "x", "b": 2}]
    assert grid({}) == [{}]


def test_run_selects_on_valid_and_writes_results(tmp_path):
    config = RunConfig(
        models=("toppop", "ease"),
        dataset="synthetic-small",
        seeds=(0, 1),
        hparams={"ease": {"lam": [1.0, 50.0]}},
        output_dir=str(tmp_path),
    )
    lines = []
    results, path = run(config, progress=lines.append)
    on_disk = json.loads(path.read_text())
    assert on_disk["config"]["models"] == ["toppop", "ease"]
    assert on_disk["environment"]["packages"]["jax"]
    assert on_disk["dataset"]["stats"]["users"] == 300
    assert len(results["runs"]) == 4 and len(lines) == 6  # 2 seeds x (1 + 2 grid points)
    for entry in results["runs"]:
        if entry["model"] != "ease":
            continue
        valid_scores = [t["valid"]["Recall@20"] for t in entry["grid"]]
        assert (
            entry["hparams"]["lam"] == entry["grid"][int(np.argmax(valid_scores))]["hparams"]["lam"]
        )
        assert set(entry["test"]) >= {"Recall@10", "Recall@20", "NDCG@10", "NDCG@20"}
    ease = next(s for s in results["summary"] if s["model"] == "ease")
    toppop = next(s for s in results["summary"] if s["model"] == "toppop")
    assert ease["test"]["Recall@20"]["mean"] > toppop["test"]["Recall@20"]["mean"]
    # Closed-form models are deterministic: no spread over seeds.
    assert ease["test"]["Recall@20"]["std"] == 0.0
    assert "ease" in format_table(results)


def test_fit_returns_the_record_of_a_staged_model():
    """A model trained by several loop runs (ADRec's stages) is fit once, by its entry's
    fit_stages, whose record becomes the run's training record; the overrides reach it."""
    calls = []

    def fit_stages(hparams, data, key, overrides):
        calls.append(overrides)
        return jnp.ones(3), {"epochs": 7, "best_epoch": 2}

    spec = ModelSpec(
        "staged",
        {"max_len": 5},
        kind="staged",
        input="sequences",
        fit_stages=fit_stages,
        score=lambda hparams: lambda params, batch: params,
    )
    data = SeqFitData(SequenceDataset(np.array([0, 3]), np.array([0, 1, 2]), 3))
    fitted = fit(spec, spec.hparams(), data, seeds.key(0, "fit"), overrides={"ks": (5,)})
    np.testing.assert_array_equal(fitted.params, np.ones(3))
    assert fitted.training == {"epochs": 7, "best_epoch": 2} and fitted.seconds >= 0
    assert calls == [{"ks": (5,)}]


def test_summarize_mean_and_std():
    runs = [
        {
            "model": "m",
            "seed": s,
            "valid": {"R": v},
            "test": {"R": v},
            "fit_seconds": 1.0,
            "eval_seconds": 2.0,
            "training": None,
        }
        for s, v in ((0, 0.1), (1, 0.3))
    ]
    (entry,) = summarize(runs)
    assert entry["test"]["R"]["mean"] == pytest.approx(0.2)
    assert entry["test"]["R"]["std"] == pytest.approx(np.std([0.1, 0.3], ddof=1))


def _script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "experiments" / "run.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_script_runs_and_prints_table(tmp_path):
    proc = _script("--dataset=synthetic-small", f"--output_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ease" in proc.stdout and "results written to" in proc.stdout
    assert len(list(tmp_path.glob("*.json"))) == 1


@pytest.mark.parametrize(
    "args, match",
    [
        (["--model=nope"], "unknown model 'nope'"),
        (["--dataset=nope"], "unknown dataset 'nope'"),
        (["--seeds=a"], "--seeds=a: expected integers"),
        (["--select_metric=Recall@50"], "--select_metric='Recall@50'"),
        (["--hp=ease.lam=-1"], "lam > 0"),
        (["--output_dir=/proc/forbidden"], "--output_dir='/proc/forbidden'"),
        (["--config=/nonexistent.py"], "--config='/nonexistent.py': no such file"),
    ],
)
def test_script_bad_flags_give_library_errors(tmp_path, args, match):
    proc = _script("--dataset=synthetic-small", f"--output_dir={tmp_path}", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert match in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("*.json"))  # no results that look successful


def _tiny_run(tmp_path, seeds, models=("toppop", "ease"), hparams=None):
    config = RunConfig(
        models=models,
        dataset="synthetic-small",
        seeds=seeds,
        hparams=hparams or {},
        output_dir=str(tmp_path / "-".join(map(str, seeds))),
    )
    results, path = run(config, progress=lambda _: None)
    return results, path


def test_merge_of_seed_files_equals_one_run_of_all_seeds(tmp_path):
    both, _ = _tiny_run(
        tmp_path, (0, 1), models=("toppop", "bprmf"), hparams={"bprmf": {"max_epochs": [2]}}
    )
    _, p0 = _tiny_run(
        tmp_path, (0,), models=("toppop", "bprmf"), hparams={"bprmf": {"max_epochs": [2]}}
    )
    _, p1 = _tiny_run(
        tmp_path, (1,), models=("toppop", "bprmf"), hparams={"bprmf": {"max_epochs": [2]}}
    )
    merged = merge_results([(str(p0), read_results(p0)), (str(p1), read_results(p1))])
    assert merged["config"]["seeds"] == [0, 1]
    assert [s["file"] for s in merged["sources"]] == [str(p0), str(p1)]
    for got, want in zip(merged["summary"], both["summary"], strict=True):
        assert got["model"] == want["model"] and got["seeds"] == want["seeds"]
        for metric, value in want["test"].items():
            assert got["test"][metric]["mean"] == pytest.approx(value["mean"], abs=1e-12)
            assert got["test"][metric]["std"] == pytest.approx(value["std"], abs=1e-12)
    bprmf = next(s for s in merged["summary"] if s["model"] == "bprmf")
    assert bprmf["test"]["Recall@20"]["std"] > 0  # two different seeds of a trained model


def test_merge_rejects_what_is_not_one_experiment(tmp_path):
    a, _ = _tiny_run(tmp_path, (0,), models=("toppop",))
    with pytest.raises(ConfigError, match="seed 0 is also in a.json"):
        merge_results([("a.json", a), ("b.json", a)])
    other = json.loads(json.dumps(a))
    other["evaluation"]["ks"] = [5]
    with pytest.raises(ConfigError, match="b.json: evaluation is"):
        merge_results([("a.json", a), ("b.json", other)])
    ease1, _ = _tiny_run(tmp_path / "e1", (1,), models=("ease",), hparams={"ease": {"lam": [1.0]}})
    ease2, _ = _tiny_run(tmp_path / "e2", (2,), models=("ease",), hparams={"ease": {"lam": [9.0]}})
    with pytest.raises(ConfigError, match="expected one configuration per model"):
        merge_results([("a.json", ease1), ("b.json", ease2)])
    with pytest.raises(ConfigError, match="no results files"):
        merge_results([])
    bad = tmp_path / "bad.json"
    bad.write_text('{"config": 1,\n oops}')
    with pytest.raises(ConfigError, match="bad.json, line 2: not JSON"):
        read_results(bad)
    bad.write_text("[]")
    with pytest.raises(ConfigError, match="bad.json: no config, dataset, evaluation, runs"):
        read_results(bad)


def test_merge_script_writes_the_merged_file(tmp_path):
    _, p0 = _tiny_run(tmp_path, (0,), models=("toppop",))
    _, p1 = _tiny_run(tmp_path, (1,), models=("toppop",))
    out = tmp_path / "merged" / "all.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "experiments" / "merge.py"),
            f"--output={out}",
            str(p0),
            str(p1),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "toppop" in proc.stdout and json.loads(out.read_text())["config"]["seeds"] == [0, 1]
    proc = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "merge.py"), str(p0), str(p0)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "is also in" in proc.stderr and "Traceback" not in proc.stderr


def test_results_file_name_is_unique_per_configuration(tmp_path):
    """A run with other hyperparameters writes its own file; the same configuration run again
    replaces its own (project issue 18: results files were overwritten silently)."""

    def once(lam, output_dir=tmp_path):
        config = RunConfig(
            models=("ease",),
            dataset="synthetic-small",
            hparams={"ease": {"lam": [lam]}},
            output_dir=str(output_dir),
        )
        path = run(config, progress=lambda _: None)[1]
        assert path.name == results_name(config, "synthetic-small")
        return path

    first, other, again = once(1.0), once(5000.0), once(1.0)
    assert first != other and first == again
    assert first.name.startswith("synthetic-small__ease__seed0__") and first.suffix == ".json"
    assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted({first.name, other.name})
    assert read_results(first)["config"]["hparams"]["ease"]["lam"] == [1.0]
    assert read_results(other)["config"]["hparams"]["ease"]["lam"] == [5000.0]
    # output_dir is not part of the configuration: the name does not depend on it.
    assert once(1.0, tmp_path / "elsewhere").name == first.name
