"""The multi-model runner, its flag parsers and experiments/tune.py end to end."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from diffrec_jax.errors import ConfigError
from diffrec_jax.tuning import runner
from diffrec_jax.tuning.runner import (
    TuneConfig,
    parse_fixed_flags,
    parse_space_flags,
    study_configs,
)

REPO = Path(__file__).resolve().parents[2]


def test_parse_space_flags():
    parsed = parse_space_flags(
        ["lam=float:2:3", "diffrec.dims=categorical:[8],[16,32]"], ["ease", "diffrec"]
    )
    assert parsed == {
        "ease": {"lam": ("float", 2.0, 3.0)},
        "diffrec": {"dims": ("categorical", ((8,), (16, 32)))},
    }
    # A second flag for the same hyperparameter of a model is refused, naming both flags.
    with pytest.raises(ConfigError, match=r"--space='lam=float:2:3'.*already set by --space="):
        parse_space_flags(["ease.lam=float_log:1:1e7", "lam=float:2:3"], ["ease"])
    assert parse_space_flags(["steps=int:5:50"], ["diffrec"]) == {
        "diffrec": {"steps": ("int", 5, 50)}
    }


@pytest.mark.parametrize(
    "flag, match",
    [
        ("lam", "expected"),
        ("lam=float_log", "expected"),
        ("lam=normal:0:1", "expected"),
        ("lam=float:a:b", "numbers"),
        ("lam=float:1:2:3", "numbers"),
        ("lam=float_log:0:1", "lo > 0"),
        ("toppop.lam=float:0:1", "is not one of the models"),
        ("alpha=float:0:1", "no model"),
    ],
)
def test_parse_space_flags_rejects(flag, match):
    with pytest.raises(ConfigError, match=match):
        parse_space_flags([flag], ["ease"])


def test_parse_fixed_flags():
    assert parse_fixed_flags(["lam=3", "diffrec.dims=[8,16]"], ["ease", "diffrec"]) == {
        "ease": {"lam": 3.0},
        "diffrec": {"dims": (8, 16)},
    }
    for flag, match in (("lam", "expected"), ("ease.lam=x", "cannot read"), ("k=1", "no model")):
        with pytest.raises(ConfigError, match=match):
            parse_fixed_flags([flag], ["ease"])
    with pytest.raises(ConfigError, match=r"--fixed='lam=4'.*already set by --fixed='lam=3'"):
        parse_fixed_flags(["lam=3", "lam=4"], ["ease"])


def test_every_default_space_is_valid_for_its_model():
    from diffrec_jax import models as model_zoo
    from diffrec_jax.models.search_spaces import SEARCH_SPACES
    from diffrec_jax.tuning import StudyConfig, check_space

    assert SEARCH_SPACES["ease"] == {"lam": ("float_log", 1.0, 1e7)}
    for name, space in SEARCH_SPACES.items():
        config = StudyConfig(name, space)  # names exist, ranges are valid
        assert config.space == check_space(space) and runner.default_space(name) == dict(space)
        assert name in model_zoo.REGISTRY
        assert model_zoo.get(name).space == space  # the registry entry's space
    assert set(SEARCH_SPACES) == set(model_zoo.REGISTRY)  # every built-in model has one
    assert runner.default_space("diffrec") == SEARCH_SPACES["diffrec"]


def test_study_configs_merge_default_space_flags_and_fixed(monkeypatch):
    defaults = {"ease": {"lam": ("float_log", 1.0, 1e7)}, "toppop": {}}
    monkeypatch.setattr(runner, "default_space", lambda m: defaults.get(m))
    ease, toppop = study_configs(TuneConfig(models=("ease", "toppop"), budget=7, seed=3))
    assert ease.space == {"lam": ("float_log", 1.0, 1e7)} and ease.budget == 7 and ease.seed == 3
    assert toppop.space == {} and toppop.n_trials == 1
    (ease,) = study_configs(TuneConfig(models=("ease",), spaces={"ease": {"lam": ("float", 1, 2)}}))
    assert ease.space == {"lam": ("float", 1.0, 2.0)}
    (ease,) = study_configs(TuneConfig(models=("ease",), fixed={"ease": {"lam": 5.0}}))
    assert ease.space == {} and ease.fixed == {"lam": 5.0}
    with pytest.raises(ConfigError, match="no default search space"):
        study_configs(TuneConfig(models=("diffrec",)))
    with pytest.raises(ConfigError, match="not in"):
        study_configs(TuneConfig(models=("ease",), fixed={"toppop": {}}))
    with pytest.raises(ConfigError, match="refit='test'"):
        study_configs(TuneConfig(models=("ease",), refit="test"))


@pytest.mark.parametrize(
    "change, match",
    [
        ({"dataset": "nope"}, "unknown dataset 'nope'"),
        ({"budget": 0}, "budget=0"),
        ({"select_metric": "Recall@50"}, "select_metric='Recall@50'"),
        ({"models": ()}, "models is empty"),
    ],
)
def test_tune_errors_write_nothing(tmp_path, change, match):
    config = TuneConfig(
        **{
            "models": ("ease",),
            "dataset": "synthetic-small",
            "spaces": {"ease": {"lam": ("float_log", 1.0, 1e4)}},
            "output_dir": str(tmp_path),
            **change,
        }
    )
    with pytest.raises(ConfigError, match=match):
        runner.tune(config, progress=lambda line: None)
    assert not list(tmp_path.rglob("*.json"))


def _script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "experiments" / "tune.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_script_tunes_refits_and_resumes(tmp_path):
    args = (
        "--model=ease,toppop",
        "--dataset=synthetic-small",
        "--budget=3",
        "--refit=train+valid",
        f"--output_dir={tmp_path}",
    )
    proc = _script(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("ease trial") == 3 and proc.stdout.count("toppop trial") == 1
    header = proc.stdout.splitlines()[-5]
    for column in ("test Recall@10", "test Recall@20", "test NDCG@10", "test NDCG@20", "tune s"):
        assert column in header
    (results_path,) = tmp_path.glob("*.json")
    assert str(results_path) in proc.stdout
    results = json.loads(results_path.read_text())
    ease, toppop = results["models"]
    assert (ease["model"], toppop["model"]) == ("ease", "toppop")
    assert ease["n_trials"] == 3 and len(ease["trials"]) == 3 and toppop["n_trials"] == 1
    values = [t["value"] for t in ease["trials"]]
    assert ease["best"]["value"] == max(values)
    assert ease["refit"]["hparams"]["lam"] == ease["best"]["params"]["lam"]
    assert ease["refit"]["refit"] == "train+valid" and ease["refit"]["fit_seconds"] >= 0
    assert ease["tuning_seconds"] > 0 and "Recall@20" in ease["refit"]["test"]
    assert results["environment"]["packages"]["jax"]
    assert len(list((tmp_path / "studies").glob("*.json"))) == 2

    again = _script(*args, cwd=tmp_path)  # everything finished: nothing is rerun
    assert again.returncode == 0, again.stderr
    assert "trial 1/" not in again.stdout
    rerun = json.loads(results_path.read_text())
    assert rerun["models"][0]["trials"] == ease["trials"]
    assert rerun["models"][0]["refit"]["test"] == ease["refit"]["test"]


@pytest.mark.parametrize(
    "args, match",
    [
        (["--model=nope"], "unknown model 'nope'"),
        (["--space=ease.lam=float_log:0:1"], "lo > 0"),
    ],
)
def test_script_errors_exit_2_without_results(tmp_path, args, match):
    space = (
        [] if any(a.startswith("--space=") for a in args) else ["--space=ease.lam=float_log:1:1e4"]
    )
    proc = _script(
        "--model=ease",
        "--dataset=synthetic-small",
        *space,
        f"--output_dir={tmp_path}",
        *args,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert match in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("*.json"))


def test_results_name_is_unique_per_configuration():
    """Tuning runs with other settings get other results files (project issue 18)."""
    base = runner.TuneConfig(models=("ease",), dataset="synthetic-small", output_dir="a")
    name = runner.results_name(base, "synthetic-small")
    assert name.startswith("synthetic-small__tune__ease__random__refit-train__seed0__")
    assert runner.results_name(dataclasses.replace(base, output_dir="b"), "synthetic-small") == name
    for change in ({"budget": 3}, {"ks": (5, 10)}, {"fixed": {"ease": {"lam": 2.0}}}):
        other = dataclasses.replace(base, **change)
        assert runner.results_name(other, "synthetic-small") != name, change
