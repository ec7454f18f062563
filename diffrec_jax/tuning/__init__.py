"""Honest hyperparameter search: random search or TPE on validation, test touched once.

The pipeline, one module per step:

- :mod:`~diffrec_jax.tuning.space`: search spaces (``{name: ("float_log", lo, hi), ...}``),
  the seeded random sampler and optuna's TPE (optional dependency, the ``tuning`` extra).
- :mod:`~diffrec_jax.tuning.study`: :func:`run_study` searches on train and valid only (its
  input is :class:`~diffrec_jax.protocol.FitData`; test is not among its arguments), saves
  the study after every trial and resumes it without redoing finished trials.
- :mod:`~diffrec_jax.tuning.final`: :func:`refit_and_test` refits the chosen configuration on
  train or on train+valid and evaluates it on test, once.
- :mod:`~diffrec_jax.tuning.runner`: :func:`tune` runs the above for several models on a
  dataset and writes one results file (``experiments/tune.py``).

Example::

    from diffrec_jax.tuning import StudyConfig, run_study, refit_and_test
    config = StudyConfig("ease", space={"lam": ("float_log", 1.0, 1e7)}, budget=30)
    study = run_study(FitData(split.train, split.valid), config, path="ease.json")
    final = refit_and_test(split, config, study, refit="train")
"""

from __future__ import annotations

from diffrec_jax.tuning.final import REFITS, refit_and_test, train_plus_valid
from diffrec_jax.tuning.runner import (
    TuneConfig,
    default_space,
    format_table,
    parse_fixed_flags,
    parse_space_flags,
    study_configs,
    tune,
)
from diffrec_jax.tuning.space import (
    KINDS,
    METHODS,
    RandomSampler,
    check_space,
    draw,
    propose_tpe,
)
from diffrec_jax.tuning.study import (
    STUDY_FORMAT,
    StudyConfig,
    best_trial,
    load_study,
    run_study,
)

__all__ = [
    "KINDS",
    "METHODS",
    "REFITS",
    "STUDY_FORMAT",
    "RandomSampler",
    "StudyConfig",
    "TuneConfig",
    "best_trial",
    "check_space",
    "default_space",
    "draw",
    "format_table",
    "load_study",
    "parse_fixed_flags",
    "parse_space_flags",
    "propose_tpe",
    "refit_and_test",
    "run_study",
    "study_configs",
    "train_plus_valid",
    "tune",
]
