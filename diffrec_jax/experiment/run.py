"""One experiment: load a dataset, fit models (with a validation grid), evaluate, write results.

This is the library side of ``experiments/run.py``; a notebook or a test calls :func:`run`
directly with a :class:`RunConfig`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from diffrec_jax import models as model_zoo
from diffrec_jax.data.datasets import load_dataset
from diffrec_jax.data.sequences import SequenceSplit
from diffrec_jax.data.split import Split
from diffrec_jax.errors import ConfigError
from diffrec_jax.evaluation import Evaluator
from diffrec_jax.models.base import FitData
from diffrec_jax.models.seqbase import SeqFitData
from diffrec_jax.results import ensure_writable_dir, environment, write_json_atomic
from diffrec_jax.sequence_evaluation import SequenceEvaluator
from diffrec_jax.train import TrainingDiverged, sharding, train, training_record


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run (recorded verbatim in the results file).

    Attributes:
      models: registry names of the models to run.
      dataset: a dataset spec for :func:`diffrec_jax.data.datasets.load_dataset`.
      dataset_options: keyword options of the dataset pipeline (threshold, k-core, split...).
      seeds: model seeds; every model is fit and evaluated once per seed, and the results
        file reports each run and the mean and standard deviation over seeds.
      data_seed: seeds the synthetic generators and random splits (fixed across model seeds).
      hparams: ``{model: {name: [values...]}}``; several values form a grid that is searched
        on validation with `select_metric`; test is evaluated once, for the selected values.
      ks: cutoffs of the metrics.
      convention: metric convention (see :mod:`diffrec_jax.metrics`).
      select_metric: validation metric used to pick grid values.
      output_dir: where the results file is written.
      exclude_history: sequential models only: never recommend an item of the input history
        (False, the default, ranks history items too, as the ADRec/DiffuRec/SASRec papers).
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


# -- hyperparameter flags -------------------------------------------------------------------------

_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


def _split_top_level(text: str) -> list[str]:
    """Splits on commas that are not inside brackets: "1,[2,3]" -> ["1", "[2,3]"]."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[("
        depth -= ch in "])"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]


def parse_value(text: str, default: Any, where: str) -> Any:
    """Parses one flag value to the type of `default` (bool is strict: true/false/1/0/yes/no)."""
    try:
        if isinstance(default, bool):
            low = text.lower()
            if low not in _TRUE | _FALSE:
                raise ValueError("expected true/false")
            return low in _TRUE
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, (tuple, list)):
            value = json.loads(text.replace("(", "[").replace(")", "]"))
            if not isinstance(value, list):
                raise ValueError("expected a list such as [200,600]")
            return tuple(value)
        return text
    except ValueError as e:
        raise ConfigError(
            f"{where}: cannot read {text!r} as {type(default).__name__} ({e})"
        ) from None


def parse_hparams(flags: Sequence[str], models: Sequence[str]) -> dict[str, dict[str, list]]:
    """Parses ``--hp`` flags into per-model value grids.

    Each flag is ``name=v1,v2,...`` (applies to every listed model that has `name`) or
    ``model.name=v1,...``. List-valued hyperparameters use brackets: ``dims=[200,600]``.

    Raises:
      ConfigError: malformed flag, unknown model or hyperparameter, unparsable value.
    """
    out: dict[str, dict[str, list]] = {m: {} for m in models}
    for flag in flags:
        m = re.fullmatch(r"\s*(?:([\w+-]+)\.)?(\w+)\s*=(.*)", flag)
        if not m or not m.group(3).strip():
            raise ConfigError(
                f"--hp={flag!r}: expected name=value[,value...] or model.name=value[,value...]"
            )
        target, name, text = m.groups()
        if target is not None and target not in models:
            raise ConfigError(f"--hp={flag!r}: model {target!r} is not in --model={list(models)}")
        targets = (
            [target] if target else [mod for mod in models if name in model_zoo.get(mod).defaults]
        )
        if not targets:
            raise ConfigError(
                f"--hp={flag!r}: no model in {list(models)} has a hyperparameter {name!r}"
            )
        for mod in targets:
            defaults = model_zoo.get(mod).defaults
            if name not in defaults:
                raise ConfigError(
                    f"--hp={flag!r}: model {mod!r} has no hyperparameter {name!r}; "
                    f"expected one of {sorted(defaults)}"
                )
            out[mod][name] = [
                parse_value(v, defaults[name], f"--hp={flag!r}") for v in _split_top_level(text)
            ]
    return out


def grid(values: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Cartesian product of hyperparameter values, in a stable order."""
    names = sorted(values)
    return [
        dict(zip(names, combo, strict=True))
        for combo in itertools.product(*(values[n] for n in names))
    ]


# -- the run --------------------------------------------------------------------------------------


def check_seed(seed: Any, flag: str) -> int:
    """Returns `seed` if it is a non-negative integer (numpy's generators refuse others).

    Raises:
      ConfigError: naming `flag`.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"{flag}={seed!r}; expected a non-negative integer")
    return int(seed)


def _check_distinct(values: Sequence[Any], flag: str, what: str) -> None:
    repeated = [v for k, v in enumerate(values) if v in values[:k]]
    if repeated:
        raise ConfigError(
            f"{flag}={','.join(map(str, values))} lists {what} {repeated[0]!r} more than once; "
            f"expected each {what} once"
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
      (results dict, path of the results file).

    Raises:
      TrainingDiverged: a fit's training loss (or parameters) became NaN or infinite; the
        message names the model, seed, grid point and step. No results file is written: a
        results file always means that every fit of the run finished (a file left by an
        earlier run at the same path is not touched).
    """
    if not config.models:
        raise ConfigError("--model is empty; expected at least one model name")
    for name in config.models:
        model_zoo.get(name)  # fail fast on unknown names
    _check_distinct(config.models, "--model", "model")
    if not config.seeds:
        raise ConfigError("--seeds is empty; expected at least one seed")
    _check_distinct(config.seeds, "--seeds", "seed")
    check_seed(config.data_seed, "--data_seed")
    if config.select_metric not in _metric_names(config.ks):
        raise ConfigError(
            f"--select_metric={config.select_metric!r}; expected one of {_metric_names(config.ks)}"
        )
    out_dir = ensure_writable_dir(config.output_dir)
    hp = {m: dict(config.hparams.get(m, {})) for m in config.models}

    t0 = time.perf_counter()
    dataset = load_dataset(config.dataset, seed=config.data_seed, **dict(config.dataset_options))
    split = dataset.split
    load_time = time.perf_counter() - t0
    evaluator = Evaluator(split, ks=config.ks, convention=config.convention)
    fit_data = FitData(split.train, split.valid)
    sequential = [n for n in config.models if _is_sequential(model_zoo.get(n))]
    if sequential and "sequences" not in dataset.extras:
        raise ConfigError(
            f"--model {sequential[0]!r} is a sequential model; dataset {config.dataset!r} has "
            "no sequences (expected a 'sequences:<file>' or 'synthetic-sequences' dataset)"
        )

    runs = []
    for seed in config.seeds:
        root_key = jax.random.key(seed)
        for model_index, name in enumerate(config.models):
            spec = model_zoo.get(name)
            trials, best = [], None
            # Dataset side data (Dataset.extras, e.g. item_emb) goes to factories taking it by name.
            side = {k: v for k, v in dataset.extras.items() if k in spec.defaults}
            for trial_index, values in enumerate(grid(hp[name])):
                model = spec.build(**{**side, **values})
                model_data, model_evaluator = _prepared(
                    model, split, fit_data, evaluator, config, dataset.extras.get("sequences")
                )
                key = jax.random.fold_in(jax.random.fold_in(root_key, model_index), trial_index)
                try:
                    params, fit_time, training = _fit(model, model_data, key)
                except TrainingDiverged as e:
                    raise TrainingDiverged(
                        f"model {name!r}, seed {seed}, hparams "
                        f"{_format_hparams(model.hparams)}: {e}; no results file written",
                        step=e.step,
                        epoch=e.epoch,
                        checkpoint=e.checkpoint,
                    ) from e
                t_eval = time.perf_counter()
                valid = model_evaluator.evaluate(model.score, params, parts=("valid",))["valid"]
                trial = {
                    "hparams": dict(model.hparams),
                    "valid": valid.summary,
                    "fit_seconds": fit_time,
                    "valid_eval_seconds": time.perf_counter() - t_eval,
                    "training": training,
                }
                trials.append(trial)
                progress(
                    f"seed {seed} {name} {_format_hparams(model.hparams)}: valid "
                    f"{config.select_metric} {valid.summary[config.select_metric]:.4f} "
                    f"(fit {fit_time:.1f}s)"
                )
                if (
                    best is None
                    or valid.summary[config.select_metric] > best[0]["valid"][config.select_metric]
                ):
                    best = (trial, model, params, model_evaluator)
            trial, model, params, model_evaluator = best
            t_eval = time.perf_counter()
            final = model_evaluator.evaluate(model.score, params, parts=("valid", "test"))
            runs.append(
                {
                    "model": name,
                    "seed": seed,
                    "hparams": dict(model.hparams),
                    "valid": final["valid"].summary,
                    "test": final["test"].summary,
                    "fit_seconds": trial["fit_seconds"],
                    "eval_seconds": time.perf_counter() - t_eval,
                    "training": trial["training"],
                    "grid": trials,
                }
            )
            del params, best, model_evaluator

    results = {
        "config": dataclasses.asdict(config),
        "dataset": {
            "name": split.name,
            "spec": config.dataset,
            "stats": dataset.stats,
            "history": list(split.history),
            "load_seconds": load_time,
        },
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
    models_tag = "+".join(config.models)
    seeds_tag = "-".join(map(str, config.seeds))
    safe_name = re.sub(r"[^\w.-]+", "_", split.name)
    path = write_json_atomic(out_dir / f"{safe_name}__{models_tag}__seed{seeds_tag}.json", results)
    return results, path


def _is_sequential(spec) -> bool:
    return "max_len" in spec.defaults and spec.build().input == "sequences"


def _prepared(
    model,
    split: Split,
    fit_data: FitData,
    evaluator: Evaluator,
    config: Any,
    sequences: SequenceSplit | None = None,
):
    """The data a model is fit and evaluated on: the run's, or `model.prepare(split)`'s.

    `config` is a :class:`RunConfig` or any config with ks, convention (and exclude_history).
    A model with a data transform (``Recommender.prepare``, e.g. T-DiffRec's time-weighted train
    values) is fit on the transformed split and evaluated with its train values as input rows;
    masks and truth are the transformed split's patterns, which `prepare` must keep. A
    sequential model (``input == "sequences"``) gets the leave-one-out `sequences` split:
    ``SeqFitData`` and a :class:`~diffrec_jax.sequence_evaluation.SequenceEvaluator`.
    """
    if model.input == "sequences":
        if sequences is None:
            raise ConfigError(f"model {model.name!r} is sequential; the data has no sequences")
        return SeqFitData.from_split(sequences), SequenceEvaluator.from_split(
            sequences,
            int(model.hparams["max_len"]),
            ks=config.ks,
            convention=config.convention,
            exclude_history=bool(getattr(config, "exclude_history", False)),
        )
    if model.prepare is None:
        return fit_data, evaluator
    prepared = model.prepare(split)
    return (
        FitData(prepared.train, prepared.valid),
        Evaluator(prepared, ks=config.ks, convention=config.convention),
    )


def _fit(model, fit_data: FitData, key: jax.Array) -> tuple[Any, float, dict | None]:
    """Fits `model`; returns (params, seconds, training record or None for closed form)."""
    t_fit = time.perf_counter()
    if model.fit_with_record is not None:
        params, training = model.fit_with_record(fit_data, key)
        params = jax.block_until_ready(sharding.addressable(params))
        return params, time.perf_counter() - t_fit, training
    if model.trainable is None:
        params = jax.block_until_ready(model.fit(fit_data, key))
        return params, time.perf_counter() - t_fit, None
    inputs = {} if model.train_inputs is None else model.train_inputs(fit_data)
    result = train(model.trainable, fit_data, model.train_config, key=key, **inputs)
    # Over several processes the params span all of them: evaluate this process's copy.
    params = jax.block_until_ready(sharding.addressable(result.params))
    return params, time.perf_counter() - t_fit, training_record(result)


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


def _format_hparams(hparams: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in hparams.items()) or "-"


def _metric_names(ks: Sequence[int]) -> list[str]:
    return [
        f"{m}@{k}" for m in ("Recall", "Precision", "NDCG", "HitRate", "MRR", "MAP") for k in ks
    ]


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
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def load_config(path: str | Path) -> RunConfig:
    """Loads ``get_config() -> RunConfig`` from a Python file (configs as code).

    Raises:
      ConfigError: the file is missing or does not define get_config returning a RunConfig.
    """
    import importlib.util

    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"--config={str(path)!r}: no such file; expected a Python file defining get_config()"
        )
    spec = importlib.util.spec_from_file_location(f"diffrec_jax_config_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(
            f"--config={str(path)!r}: not a Python file; expected a .py file defining get_config()"
        )
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        config = getattr(module, "get_config", lambda: None)()
    except Exception as e:  # the file's own error, reported as a configuration error
        import traceback

        if isinstance(e, SyntaxError):
            line = e.lineno
        else:
            frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == str(path)]
            line = frames[-1].lineno if frames else None
        where = f", line {line}" if line else ""
        raise ConfigError(
            f"--config={str(path)!r}{where}: {type(e).__name__}: {e}; expected a Python file "
            "whose get_config() returns a RunConfig"
        ) from e
    if not isinstance(config, RunConfig):
        raise ConfigError(f"--config={str(path)!r}: get_config() must return a RunConfig")
    return config
