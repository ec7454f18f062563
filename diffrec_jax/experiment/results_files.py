"""Results files of ``run``: the summary over seeds, reading, merging and a text table."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from diffrec_jax.errors import ConfigError
from diffrec_jax.results import environment, text_table


def dataset_record(spec: str, dataset: Any, load_seconds: float | None = None) -> dict[str, Any]:
    """The ``dataset`` block of a results file: the split's name, the dataset spec as given, its
    statistics and history, and (when measured) the seconds it took to load."""
    record = {
        "name": dataset.split.name,
        "spec": spec,
        "stats": dataset.stats,
        "history": list(dataset.split.history),
    }
    if load_seconds is not None:
        record["load_seconds"] = load_seconds
    return record


def summarize(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation (ddof=1; 0 for one seed) over seeds, per model and metric."""
    out = []
    for name in dict.fromkeys(r["model"] for r in runs):
        mine = [r for r in runs if r["model"] == name]
        entry = {"model": name, "seeds": [r["seed"] for r in mine]}
        for part in ("valid", "test"):
            entry[part] = {}
            for metric in mine[0][part]:
                values = np.array([r[part][metric] for r in mine], np.float64)
                std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
                entry[part][metric] = {"mean": float(values.mean()), "std": std}
        entry["fit_seconds"] = float(np.mean([r["fit_seconds"] for r in mine]))
        entry["eval_seconds"] = float(np.mean([r["eval_seconds"] for r in mine]))
        best_epochs = [r["training"]["best_epoch"] for r in mine if r["training"]]
        if best_epochs:
            entry["best_epochs"] = best_epochs
        out.append(entry)
    return out


# What must agree for results files to describe one experiment (key paths into a results dict).
_MERGE_MUST_MATCH = (
    ("dataset", "name"),
    ("dataset", "stats"),
    ("evaluation",),
    ("config", "data_seed"),
    ("config", "dataset_options"),
    ("config", "exclude_history"),
)


def read_results(path: str | Path) -> dict[str, Any]:
    """Reads a results file written by :func:`run` (plain JSON; never unpickled).

    Raises:
      ConfigError: naming the file when it is missing, not JSON or not a results file.
    """
    path = Path(path)
    try:
        results = json.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror}); expected a results file") from e
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}, line {e.lineno}: not JSON ({e.msg})") from e
    missing = [
        key
        for key in ("config", "dataset", "evaluation", "runs")
        if not isinstance(results, dict) or key not in results
    ]
    if missing:
        raise ConfigError(
            f"{path}: no {', '.join(missing)}; expected a results file of experiments/run.py"
        )
    return results


def check_merge_output(output: str | Path, inputs: Sequence[str | Path]) -> None:
    """Refuses a merged file that would replace one of the files being merged.

    Raises:
      ConfigError: naming ``--output`` and the input when `output` is one of `inputs` (the
        same path, or the same file through another path or a link).
    """
    out = Path(output)
    for path in inputs:
        same = Path(os.path.abspath(out)) == Path(os.path.abspath(path))
        if not same and out.exists() and Path(path).exists():
            same = os.path.samefile(out, path)
        if same:
            raise ConfigError(
                f"--output={str(output)!r} is the input {str(path)!r}; writing it would replace "
                "a file being merged: expected another path"
            )


def merge_results(parts: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """One results dict from several results files of one experiment (seeds run in parallel).

    Args:
      parts: (file name, results dict) pairs, as written by :func:`run`; the names appear in
        errors and in the merged dict's ``sources``.

    Returns:
      A results dict with every run of every part and the summary recomputed over them; its
      ``config`` is the first part's with ``models`` and ``seeds`` the union, and ``sources``
      keeps each part's own config.

    Raises:
      ConfigError: no parts; the parts differ in dataset, split statistics, evaluation
        protocol or data options; one model has different hyperparameters in two parts; or
        the same (model, seed) run appears twice.
    """
    if not parts:
        raise ConfigError("no results files to merge; expected at least one")
    first_name, first = parts[0]

    def at(results, keys):
        for key in keys:
            results = results.get(key) if isinstance(results, Mapping) else None
        return results

    hparams_of: dict[str, tuple[str, Any]] = {}
    seen: dict[tuple[str, int], str] = {}
    for name, part in parts:
        for keys in _MERGE_MUST_MATCH:
            if at(part, keys) != at(first, keys):
                raise ConfigError(
                    f"{name}: {'.'.join(keys)} is {at(part, keys)!r} but {first_name} has "
                    f"{at(first, keys)!r}; only results of one dataset and protocol merge"
                )
        for run_ in part["runs"]:
            model, seed = run_["model"], run_["seed"]
            if (model, seed) in seen:
                raise ConfigError(
                    f"{name}: model {model!r} seed {seed} is also in {seen[model, seed]}; "
                    "expected every (model, seed) run once"
                )
            seen[model, seed] = name
            hparams = part["config"]["hparams"].get(model, {})
            earlier = hparams_of.setdefault(model, (name, hparams))
            if earlier[1] != hparams:
                raise ConfigError(
                    f"{name}: {model!r} ran with hyperparameters {hparams!r} but in "
                    f"{earlier[0]} with {earlier[1]!r}; expected one configuration per model"
                )
    runs = [run_ for _, part in parts for run_ in part["runs"]]
    config = dict(first["config"])
    config["models"] = list(dict.fromkeys(r["model"] for r in runs))
    config["seeds"] = sorted({r["seed"] for r in runs})
    config["hparams"] = {m: h for m, (_, h) in hparams_of.items()}
    return {
        "config": config,
        "dataset": first["dataset"],
        "evaluation": first["evaluation"],
        "runs": runs,
        "summary": summarize(runs),
        "sources": [{"file": name, "config": part["config"]} for name, part in parts],
        "environment": environment(),
    }


def format_table(results: Mapping[str, Any], ks: Sequence[int] = (10, 20)) -> str:
    """A plain-text table of the test metrics of every model (mean +- std over seeds)."""
    cols = [f"{m}@{k}" for m in ("Recall", "NDCG") for k in ks]
    sel = results["evaluation"]["select_metric"]
    header = ["model", "seeds", f"valid {sel}", *(f"test {c}" for c in cols), "fit s", "eval s"]
    rows = []
    for e in results["summary"]:

        def cell(part, metric, e=e):
            m = e[part][metric]
            return f"{m['mean']:.4f}" + (f" ± {m['std']:.4f}" if len(e["seeds"]) > 1 else "")

        rows.append(
            [
                e["model"],
                str(len(e["seeds"])),
                cell("valid", sel),
                *(cell("test", c) for c in cols),
                f"{e['fit_seconds']:.2f}",
                f"{e['eval_seconds']:.2f}",
            ]
        )
    return text_table(header, rows)
