"""Layer 7: one experiment (load a dataset, fit models with a validation grid, evaluate, write
results), and the fitting API tuning and audit share.

- :mod:`~diffrec_jax.experiment.fitting`: :func:`model_inputs`, :func:`fit`, :func:`selection`.
- :mod:`~diffrec_jax.experiment.run`: :class:`RunConfig` and :func:`run` (``experiments/run.py``).
- :mod:`~diffrec_jax.experiment.hparams`: ``--hp`` flags and grids.
- :mod:`~diffrec_jax.experiment.results_files`: summaries, reading, merging, tables.
- :mod:`~diffrec_jax.experiment.configs`: configuration files as code.
"""

from __future__ import annotations

from diffrec_jax.experiment.fitting import (
    Fitted,
    ModelInputs,
    fit,
    model_inputs,
    selection,
    without_history,
)
from diffrec_jax.experiment.hparams import (
    check_distinct,
    check_once,
    flag_targets,
    format_hparams,
    grid,
    parse_hparams,
    parse_value,
    split_top_level,
)
from diffrec_jax.experiment.results_files import (
    check_merge_output,
    dataset_record,
    format_table,
    merge_results,
    read_results,
    summarize,
)
from diffrec_jax.experiment.run import RunConfig, check_ks, load_config, results_name, run

__all__ = [
    "check_distinct",
    "dataset_record",
    "Fitted",
    "ModelInputs",
    "RunConfig",
    "check_ks",
    "check_merge_output",
    "check_once",
    "fit",
    "flag_targets",
    "format_hparams",
    "format_table",
    "grid",
    "load_config",
    "merge_results",
    "model_inputs",
    "parse_hparams",
    "parse_value",
    "read_results",
    "results_name",
    "run",
    "selection",
    "split_top_level",
    "summarize",
    "without_history",
]
