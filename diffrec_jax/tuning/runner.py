"""Tuning several models on one dataset: the library side of ``experiments/tune.py``.

For every model: a study on (train, valid) with its search space (persisted in
``<output_dir>/studies/``, resumed when run again), then the chosen configuration is refit and
evaluated on test once. One results file holds, per model, the chosen hyperparameters, every
trial, the tuning time, the refit's fit time and the test metrics.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from diffrec_jax import models as model_zoo
from diffrec_jax.data.datasets import load_dataset
from diffrec_jax.data.sequences import SequenceSplit
from diffrec_jax.data.split import Split
from diffrec_jax.errors import ConfigError
from diffrec_jax.experiment import (
    check_ks,
    check_once,
    dataset_record,
    flag_targets,
    parse_value,
    split_top_level,
)
from diffrec_jax.protocol import FitData, SeqFitData
from diffrec_jax.results import ensure_writable_dir, environment, text_table, write_json_atomic
from diffrec_jax.seeds import check_seed
from diffrec_jax.tuning import space as spaces
from diffrec_jax.tuning.final import check_refit, refit_and_test
from diffrec_jax.tuning.study import StudyConfig, run_study


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    """A tuning run (recorded verbatim in the results file).

    Attributes:
      models: registry names.
      dataset, dataset_options, data_seed: as in :class:`diffrec_jax.experiment.RunConfig`.
      budget: trials per model.
      method: "random" or "tpe".
      seed: the studies' seed (sampler and model keys).
      select_metric: validation metric maximised.
      refit: "train" or "train+valid" (see :mod:`diffrec_jax.tuning.final`).
      ks, convention: metric cutoffs and convention.
      spaces: ``{model: {name: spec}}`` entries that replace or add to the model's default
        space (:func:`default_space`).
      fixed: ``{model: {name: value}}`` hyperparameters held fixed (removed from the space).
      tpe_startup: TPE's random start-up trials.
      output_dir: results file and ``studies/`` directory. The results file is named
        ``<dataset>__tune__<models>__<method>__refit-<refit>__seed<seed>__<hash>.json``,
        ``<hash>`` 10 hex digits of the SHA-256 of this config without `output_dir`
        (:func:`results_name`): a tuning run with another budget, space, fixed value,
        cutoffs or data option writes another file; the same configuration run again
        (resuming its studies) replaces its own.
    """

    models: tuple[str, ...] = ("toppop", "ease")
    dataset: str = "synthetic"
    dataset_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    data_seed: int = 0
    budget: int = 20
    method: str = "random"
    seed: int = 0
    select_metric: str = "Recall@20"
    refit: str = "train"
    ks: tuple[int, ...] = (10, 20)
    convention: str = "recbole"
    spaces: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    fixed: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    tpe_startup: int = 10
    output_dir: str = "results"


def default_space(model: str) -> dict[str, Any] | None:
    """The search space of the model's registry entry (``ModelSpec.space``), or None."""
    space = model_zoo.get(model).space
    return None if space is None else dict(space)


def study_configs(config: TuneConfig) -> list[StudyConfig]:
    """One validated :class:`StudyConfig` per model (nothing is loaded or written).

    Raises:
      ConfigError: an unknown model, a model with hyperparameters but no search space, a bad
        space, fixed value, method, budget or metric.
    """
    if not config.models:
        raise ConfigError("models is empty; expected at least one model")
    repeated = sorted({m for m in config.models if config.models.count(m) > 1})
    if repeated:
        raise ConfigError(
            f"models={list(config.models)} names {', '.join(map(repr, repeated))} more than "
            "once; expected each model once"
        )
    check_seed(config.data_seed, "data_seed")
    check_seed(config.seed, "seed")
    check_ks(tuple(config.ks), flag="ks")
    unknown = sorted((set(config.spaces) | set(config.fixed)) - set(config.models))
    if unknown:
        raise ConfigError(f"spaces/fixed given for {unknown}, which are not in {config.models}")
    check_refit(config.refit)
    out = []
    for name in config.models:
        spec = model_zoo.get(name)
        fixed = dict(config.fixed.get(name, {}))
        space = default_space(name)
        if space is None and name not in config.spaces and spec.defaults:
            raise ConfigError(
                f"model {name!r} has no default search space; give one with --space "
                f"(hyperparameters: {sorted(spec.defaults)})"
            )
        space = {**(space or {}), **config.spaces.get(name, {})}
        space = {k: v for k, v in space.items() if k not in fixed}
        out.append(
            StudyConfig(
                model=name,
                space=space,
                budget=config.budget,
                method=config.method,
                seed=config.seed,
                select_metric=config.select_metric,
                ks=tuple(config.ks),
                convention=config.convention,
                fixed=fixed,
                tpe_startup=config.tpe_startup,
            )
        )
    return out


def _safe(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text)


def results_name(config: TuneConfig, dataset_name: str) -> str:
    """The results file's name, unique per configuration (see :attr:`TuneConfig.output_dir`)."""
    fields = dataclasses.asdict(config)
    fields.pop("output_dir")
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=repr).encode())
    return (
        f"{_safe(dataset_name)}__tune__{'+'.join(config.models)}__{config.method}"
        f"__refit-{config.refit}__seed{config.seed}__{digest.hexdigest()[:10]}.json"
    )


def tune(
    config: TuneConfig, *, progress: Callable[[str], None] = print
) -> tuple[dict[str, Any], Path]:
    """Tunes every model, refits the chosen configurations, evaluates them on test once each,
    and writes the results file atomically.

    Returns:
      (results dict, path of the results file).
    """
    studies = study_configs(config)
    out_dir = ensure_writable_dir(config.output_dir)
    t0 = time.perf_counter()
    dataset = load_dataset(config.dataset, seed=config.data_seed, **dict(config.dataset_options))
    split = dataset.split
    check_ks(tuple(config.ks), split.n_items, flag="ks")
    load_seconds = time.perf_counter() - t0
    data_id = {
        "spec": config.dataset,
        "options": dict(config.dataset_options),
        "data_seed": config.data_seed,
    }
    entries = tune_split(
        split,
        studies,
        refit=config.refit,
        dataset_id=data_id,
        study_dir=ensure_writable_dir(out_dir / "studies"),
        progress=progress,
        sequences=dataset.extras.get("sequences"),
        side=dataset.extras,
    )
    results = {
        "config": dataclasses.asdict(config),
        "dataset": dataset_record(config.dataset, dataset, load_seconds),
        "evaluation": {
            "ks": list(config.ks),
            "convention": config.convention,
            "select_metric": config.select_metric,
            "refit": config.refit,
            "protocol": "search: fit on train, select on valid (test is not an input); "
            + (
                "refit on train; test: train rows in, train+valid masked"
                if config.refit == "train"
                else "refit on train+valid; test: train+valid rows in, train+valid masked"
            )
            + "; test evaluated once per model; full ranking"
            + (
                "; sequential models: leave-one-out, fit on the train sequences, select on the "
                "valid item, refit on train, test item evaluated once (history items not "
                "excluded)"
                if any(model_zoo.get(m).input == "sequences" for m in config.models)
                else ""
            ),
        },
        "models": entries,
        "environment": environment(),
    }
    path = write_json_atomic(out_dir / results_name(config, split.name), results)
    return results, path


def tune_split(
    split: Split,
    studies: Sequence[StudyConfig],
    *,
    refit: str = "train",
    dataset_id: Any = "data",
    study_dir: str | Path | None = None,
    progress: Callable[[str], None] = print,
    sequences: SequenceSplit | None = None,
    side: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Runs every study on (train, valid), then refits its choice and evaluates it on test once.

    Only ``FitData(split.train, split.valid)`` goes to the search (for a sequential model
    ``SeqFitData.from_split(sequences)``: train sequences and valid items); the test part is
    read once per study, by :func:`refit_and_test`, after its search has finished.

    Args:
      split: the dataset's split.
      studies: one configuration per model.
      refit: "train" or "train+valid".
      dataset_id: JSON-able id of the data, recorded in (and checked against) the study files.
      study_dir: where the study files are saved and resumed from (named
        ``<split>__<model>__<method>__seed<seed>.json``); None keeps them in memory.
      progress: called with one line per trial and per refit.
      sequences: the leave-one-out split of a sequence dataset (``Dataset.extras
        ["sequences"]``), needed by sequential models.
      side: the dataset's side data (``Dataset.extras``; e.g. L-DiffRec's item embeddings).

    Returns:
      One entry per study: model, study_file, space, fixed, n_trials, n_failed,
      tuning_seconds, best (the chosen trial), trials, refit (see :func:`refit_and_test`).
    """
    check_refit(refit)
    search_data = FitData(split.train, split.valid)  # everything the search may see
    entries = []
    for study_config in studies:
        final_split: Split | SequenceSplit = split
        data: FitData | SeqFitData = search_data
        if model_zoo.get(study_config.model).input == "sequences":
            if refit != "train":
                raise ConfigError(
                    f"--refit={refit} for the sequential model {study_config.model!r}; only "
                    "'train' is supported (the valid item is the early-stopping signal)"
                )
            if sequences is None:
                raise ConfigError(
                    f"model {study_config.model!r} is sequential; the data has no sequences "
                    "(expected a 'sequences:<file>' or 'synthetic-sequences' dataset)"
                )
            final_split, data = sequences, SeqFitData.from_split(sequences)
        path = None
        if study_dir is not None:
            path = Path(study_dir) / (
                f"{_safe(split.name)}__{study_config.model}__{study_config.method}"
                f"__seed{study_config.seed}.json"
            )
        study = run_study(
            data, study_config, dataset=dataset_id, path=path, progress=progress, side=side
        )
        final = refit_and_test(final_split, study_config, study, refit=refit, side=side)
        sel = study_config.select_metric
        progress(
            f"{study_config.model}: chose trial {final['index'] + 1} (valid {sel} "
            f"{study['best']['value']:.4f}); refit on {refit} in {final['fit_seconds']:.1f}s; "
            f"test {sel} {final['test'][sel]:.4f}"
        )
        trials = study["trials"][: study_config.n_trials]
        entries.append(
            {
                "model": study_config.model,
                "study_file": None if path is None else str(path),
                "space": study["settings"]["space"],
                "fixed": study["settings"]["fixed"],
                "n_trials": len(trials),
                "n_failed": sum(t["state"] == "failed" for t in trials),
                "tuning_seconds": study["tuning_seconds"],
                "best": study["best"],
                "trials": trials,
                "refit": final,
            }
        )
    return entries


def format_table(results: Mapping[str, Any], ks: Sequence[int] = (10, 20)) -> str:
    """A plain-text table: test Recall/NDCG at `ks` of every tuned model, with times."""
    cols = [f"{m}@{k}" for m in ("Recall", "NDCG") for k in ks]
    sel = results["evaluation"]["select_metric"]
    header = ["model", "trials", f"valid {sel}", *(f"test {c}" for c in cols), "tune s", "fit s"]
    rows = []
    for e in results["models"]:
        test = e["refit"]["test"]
        rows.append(
            [
                e["model"],
                str(e["n_trials"]),
                _cell(e["best"]["value"]),
                *(_cell(test.get(c)) for c in cols),
                f"{e['tuning_seconds']:.1f}",
                f"{e['refit']['fit_seconds']:.1f}",
            ]
        )
    return text_table(header, rows)


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


# -- flags ----------------------------------------------------------------------------------------

_FLAG = re.compile(r"\s*(?:([\w-]+)\.)?(\w+)\s*=\s*(.+)")


def parse_space_flags(flags: Sequence[str], models: Sequence[str]) -> dict[str, dict[str, tuple]]:
    """Parses ``--space`` flags: ``[model.]name=kind:lo:hi`` or ``[model.]name=categorical:a,b``.

    Without a model the entry applies to every listed model that has `name`. Categorical values
    are read with the type of the hyperparameter's default (lists in brackets:
    ``categorical:[200,600],[1000]``).

    Raises:
      ConfigError: a malformed flag, unknown model or hyperparameter, an unreadable value, or
        a hyperparameter of a model given by two flags (both are named).
    """
    out: dict[str, dict[str, tuple]] = {}
    given: dict[tuple[str, str], str] = {}
    for flag in flags:
        m = _FLAG.fullmatch(flag)
        kind, colon, rest = m.group(3).partition(":") if m else ("", "", "")
        if not m or not colon or kind not in spaces.KINDS:
            raise ConfigError(
                f"--space={flag!r}: expected [model.]name=kind:lo:hi or "
                f"[model.]name=categorical:v1,v2 with kind one of {spaces.KINDS}"
            )
        target, name, _ = m.groups()
        for t in flag_targets(f"--space={flag!r}", target, name, models):
            where = f"--space={flag!r}"
            check_once(given, t, name, where)
            if kind == "categorical":
                default = model_zoo.get(t).defaults[name]
                values = [parse_value(v, default, where) for v in split_top_level(rest)]
                entry: tuple = (kind, values)
            else:
                bounds = rest.split(":")
                try:
                    lo, hi = (float(b) for b in bounds)
                except ValueError:
                    raise ConfigError(f"{where}: expected {kind}:lo:hi with numbers") from None
                entry = (kind, lo, hi)
            out.setdefault(t, {})[name] = spaces.check_space({name: entry}, where)[name]
    return out


def parse_fixed_flags(flags: Sequence[str], models: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Parses ``--fixed`` flags, ``[model.]name=value``, to ``{model: {name: value}}`` (values
    read with the type of the hyperparameter's default).

    Raises:
      ConfigError: a malformed flag, unknown model or hyperparameter, an unreadable value, or
        a hyperparameter of a model given by two flags (both are named).
    """
    out: dict[str, dict[str, Any]] = {}
    given: dict[tuple[str, str], str] = {}
    for flag in flags:
        m = _FLAG.fullmatch(flag)
        if not m:
            raise ConfigError(f"--fixed={flag!r}: expected [model.]name=value")
        target, name, text = m.groups()
        for t in flag_targets(f"--fixed={flag!r}", target, name, models):
            check_once(given, t, name, f"--fixed={flag!r}")
            default = model_zoo.get(t).defaults[name]
            out.setdefault(t, {})[name] = parse_value(text.strip(), default, f"--fixed={flag!r}")
    return out
