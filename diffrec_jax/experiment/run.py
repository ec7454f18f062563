"""One experiment: load a dataset, fit models (with a validation grid), evaluate, write results.

This is the library side of ``experiments/run.py``; a notebook or a test calls :func:`run`
directly with a :class:`RunConfig`.
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

import numpy as np

from diffrec_jax import models as model_zoo
from diffrec_jax import seeds
from diffrec_jax.data.datasets import load_dataset
from diffrec_jax.data.sequences import SequenceSplit
from diffrec_jax.data.split import Split
from diffrec_jax.errors import ConfigError
from diffrec_jax.evaluation import Evaluator, SequenceEvaluator
from diffrec_jax.experiment import configs
from diffrec_jax.experiment.fitting import fit, model_inputs, selection
from diffrec_jax.experiment.hparams import check_distinct, check_grid, format_hparams, grid
from diffrec_jax.experiment.results_files import dataset_record, summarize
from diffrec_jax.metrics import metric_names
from diffrec_jax.results import ensure_writable_dir, environment, write_json_atomic
from diffrec_jax.seeds import check_seed
from diffrec_jax.train import TrainingDiverged


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run (recorded verbatim in the results file).

    Attributes:
      models: registry names of the models to run.
      dataset: a dataset spec for :func:`diffrec_jax.data.datasets.load_dataset`.
      dataset_options: keyword options of the dataset pipeline (threshold, k-core, split...).
      seeds: model seeds, integers in [0, 2**32); every model is fit and evaluated once per
        seed with the key ``diffrec_jax.seeds.key(seed, "fit")`` (the same for every grid
        point, and the one ``tune`` and ``audit`` use), and the results file reports each run
        and the mean and standard deviation over seeds.
      data_seed: seeds the synthetic generators and random splits (fixed across model seeds).
      hparams: ``{model: {name: [values...]}}``; several values form a grid that is searched
        on validation with `select_metric`; test is evaluated once, for the selected values.
      ks: cutoffs of the metrics: distinct, positive and at most the dataset's number of
        items (checked once the data is loaded, before any fit).
      convention: metric convention (see :mod:`diffrec_jax.metrics`).
      select_metric: validation metric used to pick grid values, and to stop gradient-trained
        models early (with `ks` and `convention`).
      output_dir: where the results file is written, named
        ``<dataset>__<models>__seed<seeds>__<hash>.json`` with ``<hash>`` 10 hex digits of
        the SHA-256 of this config (every field but `output_dir`): runs with other
        hyperparameters, options or protocol get another file, and only the same
        configuration run again replaces its own file (see :func:`results_name`).
      exclude_history: sequential models only: never recommend an item of the input history
        (False, the default, ranks history items too, as the ADRec/DiffuRec/SASRec papers).
        Refused (ConfigError) when no model of `models` is sequential, where it would do
        nothing.
    """

    models: tuple[str, ...] = ("toppop", "ease")
    dataset: str = "synthetic"
    dataset_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    data_seed: int = 0
    hparams: Mapping[str, Mapping[str, Sequence[Any]]] = dataclasses.field(default_factory=dict)
    ks: tuple[int, ...] = (10, 20)
    convention: str = "recbole"
    select_metric: str = "Recall@20"
    output_dir: str = "results"
    exclude_history: bool = False


def config_hash(config: RunConfig) -> str:
    """10 hex digits of the SHA-256 of `config` without `output_dir` (canonical JSON)."""
    fields = dataclasses.asdict(config)
    fields.pop("output_dir")
    text = json.dumps(fields, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def results_name(config: RunConfig, dataset_name: str) -> str:
    """The results file's name: ``<dataset>__<models>__seed<seeds>__<config hash>.json``.

    The hash (:func:`config_hash`) makes the name unique per configuration, so a run with
    other hyperparameters, dataset options, cutoffs, convention or selection metric never
    replaces an earlier run's file; running the same configuration again does.
    """
    safe_name = re.sub(r"[^\w.-]+", "_", dataset_name)
    models_tag = "+".join(config.models)
    seeds_tag = "-".join(map(str, config.seeds))
    return f"{safe_name}__{models_tag}__seed{seeds_tag}__{config_hash(config)}.json"


def check_ks(ks: Sequence[int], n_items: int | None = None, flag: str = "--ks") -> None:
    """Checks metric cutoffs: at least one, positive integers, each once, and (given
    `n_items`) none above the number of items, whose metrics would rank every item: such a
    cutoff is refused, not clipped, so a results file's cutoffs are the ones asked for.

    Raises:
      ConfigError: naming `flag`, the cutoffs and (for a too-large cutoff) n_items.
    """
    listed = ",".join(map(str, ks))
    if not ks:
        raise ConfigError(f"{flag} is empty; expected at least one cutoff")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ConfigError(f"{flag}={listed}: expected positive integer cutoffs")
    check_distinct(ks, flag, "cutoff")
    too_large = [k for k in ks if n_items is not None and k > n_items]
    if too_large:
        raise ConfigError(
            f"{flag}={listed}: cutoff {too_large[0]} is above the dataset's "
            f"n_items={n_items}; expected cutoffs <= n_items"
        )


def run(config: RunConfig, *, progress: Any = print) -> tuple[dict[str, Any], Path]:
    """Runs the experiment and writes its results file atomically.

    For every seed and model: every grid point is fit on train (gradient-trained models with
    early stopping on valid) and evaluated on valid; the point with the best `select_metric` is
    evaluated on test (valid and test in one pass over the users). Test never influences a
    choice.

    Args:
      config: the run.
      progress: called with one line of text per finished fit (``print`` by default).

    Returns:
      (results dict, path of the results file, named by :func:`results_name`).

    Raises:
      ConfigError: a bad config (unknown or repeated model, bad or repeated seed or cutoff,
        a cutoff above the number of items, `exclude_history` without a sequential model,
        an output directory that cannot be written...), raised before any fit; the
        checks that need no data run before the data is loaded.
      TrainingDiverged: a fit's training loss (or parameters) became NaN or infinite; the
        message names the model, seed, grid point and step. No results file is written: a
        results file always means that every fit of the run finished (a file left by an
        earlier run at the same path is not touched).
    """
    if not config.models:
        raise ConfigError("--model is empty; expected at least one model name")
    for name in config.models:
        model_zoo.get(name)  # fail fast on unknown names
    check_distinct(config.models, "--model", "model")
    if not config.seeds:
        raise ConfigError("--seeds is empty; expected at least one seed")
    for seed in config.seeds:
        check_seed(seed, "--seeds")
    check_distinct(config.seeds, "--seeds", "seed")
    check_seed(config.data_seed, "--data_seed")
    check_ks(config.ks)
    sequential = [n for n in config.models if model_zoo.get(n).input == "sequences"]
    if config.exclude_history and not sequential:
        raise ConfigError(
            f"--exclude_history is set but no model of --model={','.join(config.models)} is "
            "sequential; it only applies to sequential models (it would do nothing here)"
        )
    if config.select_metric not in metric_names(config.ks):
        raise ConfigError(
            f"--select_metric={config.select_metric!r}; expected one of {metric_names(config.ks)}"
        )
    unknown = sorted(set(config.hparams) - set(config.models))
    if unknown:
        raise ConfigError(f"hparams given for {unknown}, which are not in --model")
    hp = {m: check_grid(m, config.hparams.get(m, {})) for m in config.models}
    for name in config.models:  # every grid point's values, checked before loading the data
        spec = model_zoo.get(name)
        for values in grid(hp[name]) if hp[name] else ():
            try:
                spec.build(**spec.hparams(**values))
            except ConfigError as e:
                raise ConfigError(f"--hp for model {name!r} ({format_hparams(values)}): {e}") from e
    out_dir = ensure_writable_dir(config.output_dir)

    t0 = time.perf_counter()
    dataset = load_dataset(config.dataset, seed=config.data_seed, **dict(config.dataset_options))
    split = dataset.split
    load_time = time.perf_counter() - t0
    sequences: SequenceSplit | None = dataset.extras.get("sequences")
    check_ks(config.ks, split.n_items)
    if sequential and sequences is None:
        raise ConfigError(
            f"--model {sequential[0]!r} is a sequential model; dataset {config.dataset!r} has "
            "no sequences (expected a 'sequences:<file>' or 'synthetic-sequences' dataset)"
        )
    overrides = selection(config.select_metric, config.ks, config.convention)

    runs = []
    for seed in config.seeds:
        key = seeds.key(seed, "fit")  # every model and grid point of this seed: one key
        for name in config.models:
            spec = model_zoo.get(name)
            data: Split | SequenceSplit = split
            if spec.input == "sequences":
                assert sequences is not None  # checked above for every sequential model
                data = sequences
            trials: list[dict[str, Any]] = []
            best: tuple[dict[str, Any], Callable, Any, Evaluator | SequenceEvaluator] | None = None
            for values in grid(hp[name]):
                try:
                    hparams = spec.hparams(**values)
                    inputs = model_inputs(
                        spec,
                        hparams,
                        data,
                        side=dataset.extras,
                        ks=config.ks,
                        convention=config.convention,
                        exclude_history=config.exclude_history,
                    )
                    fitted = fit(spec, hparams, inputs.data, key, overrides=overrides)
                    score = spec.build(**hparams).score
                except TrainingDiverged as e:
                    raise TrainingDiverged(
                        f"model {name!r}, seed {seed}, hparams "
                        f"{format_hparams(spec.hparams(**values))}: {e}; no results file written",
                        step=e.step,
                        epoch=e.epoch,
                        checkpoint=e.checkpoint,
                    ) from e
                except ConfigError as e:
                    if not values:
                        raise
                    # A value the user gave: name the flag and the model it went to.
                    raise ConfigError(
                        f"--hp for model {name!r} ({format_hparams(values)}): {e}"
                    ) from e
                t_eval = time.perf_counter()
                valid = inputs.evaluator.evaluate(score, fitted.params, parts=("valid",))["valid"]
                value = valid.summary[config.select_metric]
                if not np.isfinite(value):
                    raise ConfigError(
                        f"model {name!r}, seed {seed}, hparams {format_hparams(hparams)}: "
                        f"valid {config.select_metric} is {value} (no user has a validation "
                        "item?); nothing can be selected on it"
                    )
                trial: dict[str, Any] = {
                    "hparams": dict(hparams),
                    "valid": valid.summary,
                    "fit_seconds": fitted.seconds,
                    "valid_eval_seconds": time.perf_counter() - t_eval,
                    "training": fitted.training,
                }
                trials.append(trial)
                progress(
                    f"seed {seed} {name} {format_hparams(hparams)}: valid "
                    f"{config.select_metric} {value:.4f} (fit {fitted.seconds:.1f}s)"
                )
                if best is None or value > best[0]["valid"][config.select_metric]:
                    best = (trial, score, fitted.params, inputs.evaluator)
            if best is None:
                raise ConfigError(f"model {name!r}: its hyperparameter grid {hp[name]} is empty")
            trial, score, params, evaluator = best
            t_eval = time.perf_counter()
            final = evaluator.evaluate(score, params, parts=("valid", "test"))
            runs.append(
                {
                    "model": name,
                    "seed": seed,
                    "hparams": trial["hparams"],
                    "valid": final["valid"].summary,
                    "test": final["test"].summary,
                    "fit_seconds": trial["fit_seconds"],
                    "eval_seconds": time.perf_counter() - t_eval,
                    "training": trial["training"],
                    "grid": trials,
                }
            )
            del params, best, evaluator

    results = {
        "config": dataclasses.asdict(config),
        "dataset": dataset_record(config.dataset, dataset, load_time),
        "evaluation": {
            "ks": list(config.ks),
            "convention": config.convention,
            "protocol": "valid: train rows in, train masked; test: train rows in, "
            "train+valid masked; full ranking",
            "sequential_protocol": "leave-one-out: valid history seq[:-2], test history "
            "seq[:-1], truncated to max_len; full ranking; history items "
            + ("excluded" if config.exclude_history else "not excluded"),
            "select_metric": config.select_metric,
        },
        "runs": runs,
        "summary": summarize(runs),
        "environment": environment(),
    }
    path = write_json_atomic(out_dir / results_name(config, split.name), results)
    return results, path


def load_config(path: str | Path) -> RunConfig:
    """Loads a run configuration: a Python file whose ``get_config()`` returns a RunConfig.

    Raises:
      ConfigError: the file is missing, fails, or returns something else.
    """
    return configs.load_config(path, RunConfig)
