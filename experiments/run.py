r"""Fit models on a dataset, evaluate them with the library's protocol, write a results file.

Offline default (synthetic data, TopPop and EASE):

  python experiments/run.py

EASE on the DiffRec ML-1M split with lambda picked on validation:

  python experiments/run.py --model=ease --dataset=diffrec:../shared/data/diffrec-ml-1m_clean \
      --hp=lam=100,200,500,1000,1200,2000,5000,10000

A configuration written as code (flags given on the command line override its fields):

  python experiments/run.py --config=experiments/configs/diffrec_ml1m.py --seeds=1,2,3,4,5
"""

from __future__ import annotations

import dataclasses
import logging
import sys

from absl import app, flags

from diffrec_jax import models as model_zoo
from diffrec_jax.errors import DiffrecError
from diffrec_jax.experiment import RunConfig, format_table, load_config, parse_hparams, run

_CONFIG = flags.DEFINE_string("config", None, "A Python file defining get_config() -> RunConfig.")
_MODEL = flags.DEFINE_list(
    "model",
    ["toppop", "ease"],
    f"Models to run, comma separated. Available: {model_zoo.available()}.",
)
_DATASET = flags.DEFINE_string(
    "dataset",
    "synthetic",
    "A built-in dataset name (synthetic, synthetic-small, synthetic-sequences), a public dataset "
    "downloaded on first use into $DIFFREC_JAX_CACHE or ~/.cache/diffrec_jax (ml-100k, ml-1m, "
    "ml-20m, ml-25m, amazon-beauty, amazon-baby, amazon-sports, amazon-toys, yelp), or kind:path "
    "with kind in diffrec, sequences, recbole, movielens, csv, amazon, yelp.",
)
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Model seeds; results report mean and std over them.")
_DATA_SEED = flags.DEFINE_integer("data_seed", 0, "Seed of synthetic data and random splits.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "results", "Directory of the results file.")
_HP = flags.DEFINE_multi_string(
    "hp",
    [],
    "Hyperparameters, repeatable: name=v1,v2 or model.name=v1,v2; several values form "
    "a grid searched on validation. Lists in brackets: dims=[200,600].",
)
_KS = flags.DEFINE_list("ks", ["10", "20"], "Metric cutoffs.")
_CONVENTION = flags.DEFINE_enum(
    "convention",
    "recbole",
    ["recbole", "diffrec", "recsys2019"],
    "Metric convention (see diffrec_jax.metrics).",
)
_SELECT = flags.DEFINE_string("select_metric", "Recall@20", "Validation metric for the grid.")
_SPLIT = flags.DEFINE_enum(
    "split",
    None,
    ["random", "temporal", "global_temporal", "loo"],
    "Split method for raw interaction logs (recbole, movielens, csv).",
)
_THRESHOLD = flags.DEFINE_float(
    "rating_threshold", None, "Keep ratings >= this value (raw logs); default keeps all."
)
_KCORE = flags.DEFINE_integer("kcore", None, "Iterative k-core filter on users and items.")
_EXCLUDE_HISTORY = flags.DEFINE_bool(
    "exclude_history",
    False,
    "Sequential models: never recommend an item of the input history (the papers do not).",
)


def _int_list(flag, name: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in flag.value)
    except ValueError:
        raise DiffrecError(f"--{name}={','.join(flag.value)}: expected integers") from None
    if not values:
        raise DiffrecError(f"--{name} is empty: expected at least one integer")
    return values


def build_config() -> RunConfig:
    """The run's config: the --config file (or the defaults), overridden by explicit flags."""
    config = (
        load_config(_CONFIG.value)
        if _CONFIG.value
        else RunConfig(models=tuple(_MODEL.value), dataset=_DATASET.value)
    )
    present = lambda name: flags.FLAGS[name].present or not _CONFIG.value
    updates = {}
    if present("model"):
        updates["models"] = tuple(_MODEL.value)
    if present("dataset"):
        updates["dataset"] = _DATASET.value
    if present("seeds"):
        updates["seeds"] = _int_list(_SEEDS, "seeds")
    if present("data_seed"):
        updates["data_seed"] = _DATA_SEED.value
    if present("output_dir"):
        updates["output_dir"] = _OUTPUT_DIR.value
    if present("ks"):
        ks = _int_list(_KS, "ks")
        if min(ks) < 1:
            raise DiffrecError(f"--ks={_KS.value}: expected positive integers")
        updates["ks"] = ks
    if present("convention"):
        updates["convention"] = _CONVENTION.value
    if present("select_metric"):
        updates["select_metric"] = _SELECT.value
    if present("exclude_history"):
        updates["exclude_history"] = _EXCLUDE_HISTORY.value
    options = {
        k: v
        for k, v in (
            ("split", _SPLIT.value),
            ("rating_threshold", _THRESHOLD.value),
            ("kcore", _KCORE.value),
        )
        if v is not None
    }
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


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing; a bad flag is reported as "error: ..." with exit code 2."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    try:
        config = build_config()
        results, path = run(config)
    except DiffrecError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    stats = results["dataset"]["stats"]
    print(
        f"dataset {results['dataset']['name']}: {stats['users']} users, {stats['items']} items, "
        f"{stats['interactions']} interactions; test metrics ({config.convention} convention, "
        f"mean ± std over {len(config.seeds)} seed(s)):"
    )
    print(format_table(results, config.ks))
    print(f"results written to {path}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
