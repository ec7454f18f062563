r"""Audit a diffusion recommender's claim: tune everything equally, re-run with seeds, test,
measure the cost, diagnose the diffusion, write a report.

The DiffRec ML-1M audit (hours; resumable: run the same command again after an interruption):

  python experiments/audit.py --config=experiments/configs/audit_diffrec_ml1m.py \
      --output_dir=results/audit-diffrec-ml1m

A smoke version of it (2 trials per model, 2 seeds, at most 2 epochs):

  python experiments/audit.py --config=experiments/configs/audit_diffrec_ml1m.py --smoke \
      --output_dir=/tmp/audit-smoke

The tiny audit of the tests, on synthetic data (the default --config; a minute on a CPU):

  python experiments/audit.py --output_dir=/tmp/audit-tiny

The report (markdown, PNG plots, results.json) goes to <output_dir>/report-<name>/. Flags given
on the command line override the configuration; changing the budget, the epoch cap or the
method of a finished audit needs another output directory (the studies refuse other settings),
while the seeds, the energy assumptions and the report are free to change.

Bad input (an unknown flag, a stray argument, --seeds outside 1..1000, a configuration whose
data_seed, tuning_seed or seeds are not in [0, 2**32)) is reported as one line "error: <message>"
on stderr with exit status 2, before any training; --output_dir is checked to be writable before
the data is loaded.
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

from absl import app, flags

from diffrec_jax import cli
from diffrec_jax.audit import load_config, run_audit, scaled
from diffrec_jax.tuning import METHODS, parse_fixed_flags

_CONFIG = flags.DEFINE_string(
    "config",
    str(Path(__file__).resolve().parent / "configs" / "audit_tiny.py"),
    "A Python file defining get_config() -> diffrec_jax.audit.AuditConfig (default: the "
    "seconds-long tiny audit on synthetic data).",
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Studies, runs, diagnostics and report-<name>/ (default: the config's)."
)
_BUDGET = flags.DEFINE_integer("budget", None, "Tuning trials per model (default: the config's).")
_SEEDS = flags.DEFINE_integer(
    "seeds",
    None,
    "Number S of training seeds of the re-runs, 1 to 1000; seeds 1..S (default: the config's).",
)
_MAX_EPOCHS = flags.DEFINE_integer(
    "max_epochs", None, "Cap on the epochs of every gradient-trained model (scaled-down runs)."
)
_SMOKE = flags.DEFINE_bool(
    "smoke",
    False,
    "A minutes-long version: budget 2, 2 seeds, at most 2 epochs, 2 sampling seeds (flags given "
    "explicitly win).",
)
_FIXED = flags.DEFINE_multi_string(
    "fixed",
    [],
    "Hyperparameters held fixed on top of the config's, repeatable: [model.]name=value "
    "(e.g. lightgcn.batch_size=2048 to make a slow baseline's trials affordable).",
)
_METHOD = flags.DEFINE_enum("method", None, list(METHODS), "Search method (default: config's).")
_POWER = flags.DEFINE_float(
    "power_watts", None, "Assumed average power draw while computing, W (default: config's, 65)."
)
_GRID = flags.DEFINE_float(
    "grid_intensity",
    None,
    "Assumed carbon intensity of the electricity, g CO2e/kWh (default: config's, 475).",
)


def main(argv: list[str]) -> None:
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    with cli.exit_on_error():
        cli.no_positional(argv, "audit.py")
        cli.seed_count(_SEEDS.value, "seeds")
        base = load_config(_CONFIG.value)
        config = scaled(
            base,
            budget=_BUDGET.value,
            seeds=_SEEDS.value,
            max_epochs=_MAX_EPOCHS.value,
            method=_METHOD.value,
            power_watts=_POWER.value,
            grid_g_per_kwh=_GRID.value,
            output_dir=_OUTPUT_DIR.value,
            smoke=_SMOKE.value,
            fixed=parse_fixed_flags(_FIXED.value, base.models),
        )
        cli.check_config_seeds(
            f"--config={_CONFIG.value!r}",
            data_seed=config.data_seed,
            tuning_seed=config.tuning_seed,
            seeds=config.seeds,
        )
        command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
        _, report_dir = run_audit(
            config, progress=lambda line: print(line, flush=True), command=command
        )
    print((report_dir / "report.md").read_text())


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
