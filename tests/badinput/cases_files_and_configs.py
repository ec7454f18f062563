"""Bad-input cases: special files as datasets, configuration files with wrongly typed
hyperparameters, and models too large for the memory (issue 18, item 4)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from corpus import Case, run_flags, spec

from diffrec_jax.errors import ConfigError, DataError
from diffrec_jax.experiment import RunConfig, run


def fifo(tmp: Path) -> Path:
    """A named pipe nobody writes to: reading it would block forever."""
    path = tmp / "ratings.csv"
    os.mkfifo(path)
    return path


def run_config(models: tuple[str, ...], hparams: Any) -> Any:
    """run() with a RunConfig as a configuration file would build it (no flag parsing)."""

    def call(tmp: Path, target: Any) -> Any:
        config = RunConfig(
            models=models, dataset="synthetic-small", hparams=hparams, output_dir=str(tmp / "out")
        )
        return run(config, progress=lambda line: None)

    return call


CSV = {"user_col": "u", "item_col": "i"}

CASES: list[Case] = [
    Case(
        "dataset-dev-zero",
        DataError,
        ("/dev/zero", "not a regular file"),
        lambda tmp: Path("/dev/zero"),
        spec("csv", **CSV),
    ),
    Case("dataset-fifo", DataError, ("ratings.csv", "a FIFO"), fifo, spec("csv", **CSV)),
    Case(
        "dataset-directory-as-sequences-file",
        DataError,
        ("a directory", "not a regular file"),
        lambda tmp: tmp,
        spec("sequences"),
    ),
    Case(
        "config-hparam-string-for-float",
        ConfigError,
        ("hparams['ease']['lam']", "'abc'", "expected a float"),
        call=run_config(("ease",), {"ease": {"lam": ["abc"]}}),
    ),
    Case(
        "config-hparam-scalar-for-list",
        ConfigError,
        ("hparams['ease']['lam']=5.0", "expected a non-empty list"),
        call=run_config(("ease",), {"ease": {"lam": 5.0}}),
    ),
    Case(
        "config-hparam-empty-list",
        ConfigError,
        ("hparams['ease']['lam']=[]", "expected a non-empty list"),
        call=run_config(("ease",), {"ease": {"lam": []}}),
    ),
    Case(
        "config-hparam-int-for-tuple",
        ConfigError,
        ("hparams['diffrec']['dims']", "expected a tuple"),
        call=run_config(("diffrec",), {"diffrec": {"dims": [600]}}),
    ),
    Case(
        "config-hparams-of-a-model-not-run",
        ConfigError,
        ("hparams given for ['ease']",),
        call=run_config(("toppop",), {"ease": {"lam": [1.0]}}),
    ),
    Case(
        "flag-dims-too-large-for-memory",
        ConfigError,
        ("dims=(100000000,)", "parameters take", "memory available"),
        call=run_flags(("diffrec",), ["dims=[100000000]", "max_epochs=1"]),
        flags=("--model=diffrec", "--hp=dims=[100000000]"),
    ),
    Case(
        "flag-multvae-dims-too-large-for-memory",
        ConfigError,
        ("parameters take", "expected smaller layer sizes"),
        call=run_flags(("multvae",), ["dims=[100000000]", "max_epochs=1"]),
        flags=("--model=multvae", "--hp=dims=[100000000]"),
    ),
]


def _short_histories(tmp: Path) -> Path:
    """40 users with 3 interactions each: the default random split gives no validation item."""
    rows = [f"{u},{(u + k) % 30}" for u in range(40) for k in range(3)]
    path = tmp / "short.csv"
    path.write_text("u,i\n" + "\n".join(rows) + "\n")
    return path


def _run_on(models: tuple[str, ...], hp: dict | None = None) -> Any:
    def call(tmp: Path, target: Path) -> Any:
        config = RunConfig(
            models=models,
            dataset=f"csv:{target}",
            dataset_options=CSV,
            hparams=hp or {},
            output_dir=str(tmp / "out"),
        )
        return run(config, progress=lambda line: None)

    return call


CASES += [
    Case(
        "run-empty-validation-split",
        ConfigError,
        ("no user has a validation item", "nothing can be selected"),
        _short_histories,
        _run_on(("ease",), {"ease": {"lam": [1.0, 10.0]}}),
    ),
]
