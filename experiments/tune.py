r"""Tune models on validation, refit the chosen configurations, evaluate each on test once.

Offline default (synthetic data, TopPop and EASE, 20 random trials):

  python experiments/tune.py

EASE and ItemKNN on the DiffRec ML-1M split, 50 TPE trials each (needs the `tuning` extra),
refit on train+valid:

  python experiments/tune.py --model=ease,itemknn \
      --dataset=diffrec:../shared/data/diffrec-ml-1m_clean --budget=50 --method=tpe \
      --refit=train+valid --output_dir=results/tune-ml1m

Study files go to <output_dir>/studies/ and are resumed when the same command runs again
(finished trials are not redone; a study run with other settings is refused).
"""

from __future__ import annotations

import logging
import sys

from absl import app, flags

from diffrec_jax import models as model_zoo
from diffrec_jax.errors import DiffrecError
from diffrec_jax.tuning import (
    METHODS,
    REFITS,
    TuneConfig,
    format_table,
    parse_fixed_flags,
    parse_space_flags,
    tune,
)

_MODEL = flags.DEFINE_list(
    "model", ["toppop", "ease"], f"Models to tune, comma separated: {model_zoo.available()}."
)
_DATASET = flags.DEFINE_string(
    "dataset",
    "synthetic",
    "A built-in dataset name (synthetic, synthetic-small, synthetic-sequences), a public dataset "
    "downloaded on first use into $DIFFREC_JAX_CACHE or ~/.cache/diffrec_jax (ml-100k, ml-1m, "
    "ml-20m, ml-25m, amazon-beauty, amazon-baby, amazon-sports, amazon-toys, yelp), or kind:path "
    "with kind in diffrec, sequences, recbole, movielens, csv, amazon, yelp.",
)
_DATA_SEED = flags.DEFINE_integer("data_seed", 0, "Seed of synthetic data and random splits.")
_BUDGET = flags.DEFINE_integer("budget", 20, "Trials per model.")
_METHOD = flags.DEFINE_enum("method", "random", list(METHODS), "Sampler: random or tpe.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the samplers and of the models' keys.")
_SELECT = flags.DEFINE_string("select_metric", "Recall@20", "Validation metric to maximise.")
_REFIT = flags.DEFINE_enum(
    "refit", "train", list(REFITS), "Refit the chosen configuration on train or train+valid."
)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "results", "Results file and studies/ directory.")
_KS = flags.DEFINE_list("ks", ["10", "20"], "Metric cutoffs.")
_CONVENTION = flags.DEFINE_enum(
    "convention", "recbole", ["recbole", "diffrec", "recsys2019"], "Metric convention."
)
_SPACE = flags.DEFINE_multi_string(
    "space",
    [],
    "Search-space entries replacing the defaults, repeatable: [model.]name=kind:lo:hi "
    "(kind int, int_log, float, float_log) or [model.]name=categorical:v1,v2.",
)
_FIXED = flags.DEFINE_multi_string(
    "fixed", [], "Hyperparameters held fixed (not searched), repeatable: [model.]name=value."
)
_TPE_STARTUP = flags.DEFINE_integer("tpe_startup", 10, "Random start-up trials of TPE.")
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


def build_config() -> TuneConfig:
    """The tuning run described by the flags."""
    models = tuple(_MODEL.value)
    for name in models:
        model_zoo.get(name)
    try:
        ks = tuple(int(k) for k in _KS.value)
    except ValueError:
        raise DiffrecError(f"--ks={','.join(_KS.value)}: expected integers") from None
    if not ks or min(ks) < 1:
        raise DiffrecError(f"--ks={','.join(_KS.value)}: expected positive integers")
    options = {
        k: v
        for k, v in (
            ("split", _SPLIT.value),
            ("rating_threshold", _THRESHOLD.value),
            ("kcore", _KCORE.value),
        )
        if v is not None
    }
    return TuneConfig(
        models=models,
        dataset=_DATASET.value,
        dataset_options=options,
        data_seed=_DATA_SEED.value,
        budget=_BUDGET.value,
        method=_METHOD.value,
        seed=_SEED.value,
        select_metric=_SELECT.value,
        refit=_REFIT.value,
        ks=ks,
        convention=_CONVENTION.value,
        spaces=parse_space_flags(_SPACE.value, models),
        fixed=parse_fixed_flags(_FIXED.value, models),
        tpe_startup=_TPE_STARTUP.value,
        output_dir=_OUTPUT_DIR.value,
    )


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
        results, path = tune(config)
    except DiffrecError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    stats = results["dataset"]["stats"]
    print(
        f"dataset {results['dataset']['name']}: {stats['users']} users, {stats['items']} items, "
        f"{stats['interactions']} interactions; {config.method} search, {config.budget} trials "
        f"per model on valid {config.select_metric}, refit on {config.refit}, test once "
        f"({config.convention} convention):"
    )
    print(format_table(results, config.ks))
    print(f"results written to {path}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
