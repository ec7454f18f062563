r"""Fit models on a dataset, evaluate them with the library's protocol, write a results file.

Offline default (synthetic data, TopPop and EASE):

  python experiments/run.py

EASE on the DiffRec ML-1M split with lambda picked on validation:

  python experiments/run.py --model=ease --dataset=diffrec:../shared/data/diffrec-ml-1m_clean \
      --hp=lam=100,200,500,1000,1200,2000,5000,10000

A configuration written as code (flags given on the command line override its fields):

  python experiments/run.py --config=experiments/configs/diffrec_ml1m.py --seeds=1,2,3,4,5

The results file is <output_dir>/<dataset>__<models>__seed<seeds>__<hash>.json, <hash> a digest
of the whole configuration: a run with other hyperparameters, options or protocol writes a new
file; only the same configuration run again replaces its own file.

Bad input (an unknown flag or value, a stray argument, a repeated seed, cutoff or
hyperparameter, a cutoff above the number of items, an unwritable --output_dir, bad data) is
reported as one line "error: <message>" on stderr with exit status 2, before any training, and
no results file is written.
"""

from __future__ import annotations

import dataclasses
import logging

from absl import app, flags

from diffrec_jax import cli
from diffrec_jax import models as model_zoo
from diffrec_jax.experiment import RunConfig, format_table, load_config, parse_hparams, run

_CONFIG = flags.DEFINE_string("config", None, "A Python file defining get_config() -> RunConfig.")
_MODEL = flags.DEFINE_list(
    "model",
    ["toppop", "ease"],
    f"Models to run, comma separated. Available: {model_zoo.available()}.",
)
_DATA = cli.define_data_flags()
_SEEDS = flags.DEFINE_list(
    "seeds",
    ["0"],
    "Model seeds, distinct integers in [0, 2**32); results report mean and std over them.",
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir",
    "results",
    "Directory of the results file <dataset>__<models>__seed<seeds>__<config hash>.json (the "
    "hash makes it unique per configuration: another configuration never overwrites it). "
    "Checked to be writable before the data is loaded.",
)
_HP = flags.DEFINE_multi_string(
    "hp",
    [],
    "Hyperparameters, repeatable: name=v1,v2 or model.name=v1,v2; several values form "
    "a grid searched on validation (give all values of a hyperparameter in one flag: a "
    "second flag for the same one is refused). Lists in brackets: dims=[200,600].",
)
_KS = flags.DEFINE_list(
    "ks",
    ["10", "20"],
    "Metric cutoffs: distinct positive integers, none above the dataset's number of items "
    "(refused, not clipped).",
)
_CONVENTION = flags.DEFINE_enum(
    "convention",
    "recbole",
    ["recbole", "diffrec", "recsys2019"],
    "Metric convention (see diffrec_jax.metrics).",
)
_SELECT = flags.DEFINE_string("select_metric", "Recall@20", "Validation metric for the grid.")
_EXCLUDE_HISTORY = flags.DEFINE_bool(
    "exclude_history",
    False,
    "Sequential models: never recommend an item of the input history (the papers do not). "
    "Refused when no sequential model runs (it would do nothing).",
)


def build_config() -> RunConfig:
    """The run's config: the --config file (or the defaults), overridden by explicit flags."""
    config = (
        load_config(_CONFIG.value)
        if _CONFIG.value
        else RunConfig(models=tuple(_MODEL.value), dataset=_DATA.dataset.value)
    )
    present = lambda name: flags.FLAGS[name].present or not _CONFIG.value
    updates = {}
    if present("model"):
        updates["models"] = tuple(_MODEL.value)
    if present("dataset"):
        updates["dataset"] = _DATA.dataset.value
    if present("seeds"):
        updates["seeds"] = cli.seed_list(_SEEDS.value, "seeds")
    if present("data_seed"):
        updates["data_seed"] = _DATA.data_seed.value
    if present("output_dir"):
        updates["output_dir"] = _OUTPUT_DIR.value
    if present("ks"):
        updates["ks"] = cli.check_ks(_KS.value, "ks")
    if present("convention"):
        updates["convention"] = _CONVENTION.value
    if present("select_metric"):
        updates["select_metric"] = _SELECT.value
    if present("exclude_history"):
        updates["exclude_history"] = _EXCLUDE_HISTORY.value
    options = _DATA.options()
    if options:
        updates["dataset_options"] = {**config.dataset_options, **options}
    config = dataclasses.replace(config, **updates)
    for name in config.models:
        model_zoo.get(name)
    if _HP.value:
        hp = parse_hparams(_HP.value, config.models)
        merged = {m: {**config.hparams.get(m, {}), **hp.get(m, {})} for m in config.models}
        config = dataclasses.replace(config, hparams=merged)
    return config


def main(argv: list[str]) -> None:
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    with cli.exit_on_error():
        cli.no_positional(argv, "run.py")
        config = build_config()
        results, path = run(config)
    stats = results["dataset"]["stats"]
    print(
        f"dataset {results['dataset']['name']}: {stats['users']} users, {stats['items']} items, "
        f"{stats['interactions']} interactions; test metrics ({config.convention} convention, "
        f"mean ± std over {len(config.seeds)} seed(s)):"
    )
    print(format_table(results, config.ks))
    print(f"results written to {path}")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
