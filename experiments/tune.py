r"""Tune models on validation, refit the chosen configurations, evaluate each on test once.

Offline default (synthetic data, TopPop and EASE, 20 random trials):

  python experiments/tune.py

EASE and ItemKNN on the DiffRec ML-1M split, 50 TPE trials each (needs the `tuning` extra),
refit on train+valid:

  python experiments/tune.py --model=ease,itemknn \
      --dataset=diffrec:../shared/data/diffrec-ml-1m_clean --budget=50 --method=tpe \
      --refit=train+valid --output_dir=results/tune-ml1m

Study files go to <output_dir>/studies/ and are resumed when the same command runs again
(finished trials are not redone; a study run with other settings is refused). The results
file is <output_dir>/<dataset>__tune__<models>__<method>__refit-<refit>__seed<seed>__<hash>.json,
<hash> a digest of the whole configuration, so a run with other settings writes a new file.

Bad input is reported as one line "error: <message>" on stderr with exit status 2, before any
training, and no results file is written.
"""

from __future__ import annotations

import logging

from absl import app, flags

from diffrec_jax import cli
from diffrec_jax import models as model_zoo
from diffrec_jax.seeds import check_seed
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
_DATA = cli.define_data_flags()
_BUDGET = flags.DEFINE_integer("budget", 20, "Trials per model.")
_METHOD = flags.DEFINE_enum("method", "random", list(METHODS), "Sampler: random or tpe.")
_SEED = flags.DEFINE_integer(
    "seed", 0, "Seed of the samplers and of the models' keys, in [0, 2**32)."
)
_SELECT = flags.DEFINE_string("select_metric", "Recall@20", "Validation metric to maximise.")
_REFIT = flags.DEFINE_enum(
    "refit", "train", list(REFITS), "Refit the chosen configuration on train or train+valid."
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir",
    "results",
    "Results file (named with a hash of the configuration: another configuration never "
    "overwrites it) and studies/ directory; checked to be writable before the data is loaded.",
)
_KS = flags.DEFINE_list(
    "ks",
    ["10", "20"],
    "Metric cutoffs: distinct positive integers, none above the dataset's number of items.",
)
_CONVENTION = flags.DEFINE_enum(
    "convention", "recbole", ["recbole", "diffrec", "recsys2019"], "Metric convention."
)
_SPACE = flags.DEFINE_multi_string(
    "space",
    [],
    "Search-space entries replacing the defaults, repeatable: [model.]name=kind:lo:hi "
    "(kind int, int_log, float, float_log) or [model.]name=categorical:v1,v2; each "
    "hyperparameter of a model once.",
)
_FIXED = flags.DEFINE_multi_string(
    "fixed",
    [],
    "Hyperparameters held fixed (not searched), repeatable: [model.]name=value; each "
    "hyperparameter of a model once.",
)
_TPE_STARTUP = flags.DEFINE_integer("tpe_startup", 10, "Random start-up trials of TPE.")


def build_config() -> TuneConfig:
    """The tuning run described by the flags."""
    models = tuple(_MODEL.value)
    check_seed(_SEED.value, "--seed")
    check_seed(_DATA.data_seed.value, "--data_seed")
    for name in models:
        model_zoo.get(name)
    return TuneConfig(
        models=models,
        dataset=_DATA.dataset.value,
        dataset_options=_DATA.options(),
        data_seed=_DATA.data_seed.value,
        budget=_BUDGET.value,
        method=_METHOD.value,
        seed=_SEED.value,
        select_metric=_SELECT.value,
        refit=_REFIT.value,
        ks=cli.check_ks(_KS.value, "ks"),
        convention=_CONVENTION.value,
        spaces=parse_space_flags(_SPACE.value, models),
        fixed=parse_fixed_flags(_FIXED.value, models),
        tpe_startup=_TPE_STARTUP.value,
        output_dir=_OUTPUT_DIR.value,
    )


def main(argv: list[str]) -> None:
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    with cli.exit_on_error():
        cli.no_positional(argv, "tune.py")
        config = build_config()
        results, path = tune(config)
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
    app.run(main, flags_parser=cli.parse_flags)
