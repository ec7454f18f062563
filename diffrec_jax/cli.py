"""Pieces shared by the absl-flag experiment scripts (``experiments/run.py``, ``tune.py``,
``audit.py``, ``merge.py``).

The data flags (dataset, data seed, options for raw logs and sequence datasets) are defined
once here; scripts call :func:`define_data_flags` at import, parse with :func:`parse_flags`
and turn library errors into ``error: ...`` with exit status 2 through :func:`exit_on_error`.
The checks of flag values that need no data (:func:`int_list`, :func:`seed_list`,
:func:`seed_count`, :func:`check_config_seeds`, :func:`check_ks`, :func:`no_positional`,
:meth:`DataFlags.options`) raise a :class:`~diffrec_jax.errors.ConfigError` naming the flag as
the user typed it.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from absl import flags

from diffrec_jax.errors import ConfigError, DiffrecError
from diffrec_jax.experiment import check_distinct
from diffrec_jax.seeds import check_seed

DATASET_HELP = (
    "A built-in dataset name (synthetic, synthetic-small, synthetic-sequences), a public dataset "
    "downloaded on first use into $DIFFREC_JAX_CACHE or ~/.cache/diffrec_jax (ml-100k, ml-1m, "
    "ml-20m, ml-25m, amazon-beauty, amazon-baby, amazon-sports, amazon-toys, yelp), or kind:path "
    "with kind in diffrec, sequences, recbole, movielens, csv, amazon, yelp."
)

# Flags named after a load_dataset option; their value is passed to it when given.
_OPTION_FLAGS = (
    "split",
    "rating_threshold",
    "kcore",
    "short_users",
    "user_col",
    "item_col",
    "rating_col",
    "timestamp_col",
    "sep",
)


class DataFlags(NamedTuple):
    """The flag holders of :func:`define_data_flags`."""

    dataset: flags.FlagHolder
    data_seed: flags.FlagHolder
    split: flags.FlagHolder
    rating_threshold: flags.FlagHolder
    kcore: flags.FlagHolder
    short_users: flags.FlagHolder
    user_col: flags.FlagHolder
    item_col: flags.FlagHolder
    rating_col: flags.FlagHolder
    timestamp_col: flags.FlagHolder
    sep: flags.FlagHolder

    def options(self) -> dict[str, Any]:
        """The dataset options given on the command line (split, rating_threshold, kcore,
        short_users and the csv column options).

        Raises:
          ConfigError: naming the flag: --rating_threshold not a finite number, --kcore below
            1, an empty column name or separator.
        """
        options = {
            name: getattr(self, name).value
            for name in _OPTION_FLAGS
            if getattr(self, name).value is not None
        }
        return check_data_options(options)


def check_data_options(options: dict[str, Any]) -> dict[str, Any]:
    """`options` (dataset options from flags) if their values are sensible; else a ConfigError
    naming the flag (``--rating_threshold=nan``, ``--kcore=-3``, ``--user_col=``)."""
    threshold = options.get("rating_threshold")
    if threshold is not None and not math.isfinite(threshold):
        raise ConfigError(
            f"--rating_threshold={threshold}; expected a finite number (ratings >= it are kept)"
        )
    kcore = options.get("kcore")
    if kcore is not None and kcore < 1:
        raise ConfigError(
            f"--kcore={kcore}; expected a positive integer (keep users and items with at least "
            "that many interactions)"
        )
    for name in ("user_col", "item_col", "rating_col", "timestamp_col", "sep"):
        if name in options and not options[name]:
            raise ConfigError(f"--{name} is empty; expected a column name or separator")
    return options


def define_data_flags() -> DataFlags:
    """Defines --dataset, --data_seed, --split, --rating_threshold, --kcore, --short_users and
    the csv options --user_col, --item_col, --rating_col, --timestamp_col, --sep (once per
    process). Options left unset are not passed to the dataset (its defaults apply)."""
    return DataFlags(
        dataset=flags.DEFINE_string("dataset", "synthetic", DATASET_HELP),
        data_seed=flags.DEFINE_integer(
            "data_seed", 0, "Seed of synthetic data and random splits, in [0, 2**32)."
        ),
        split=flags.DEFINE_enum(
            "split",
            None,
            ["random", "temporal", "global_temporal", "loo"],
            "Split method for raw interaction logs (recbole, movielens, csv).",
        ),
        rating_threshold=flags.DEFINE_float(
            "rating_threshold",
            None,
            "Keep ratings >= this finite value (raw logs); default keeps all.",
        ),
        kcore=flags.DEFINE_integer(
            "kcore", None, "Iterative k-core filter on users and items (k >= 1; raw logs)."
        ),
        short_users=flags.DEFINE_enum(
            "short_users",
            None,
            ["raise", "drop"],
            "Leave-one-out splits (sequence datasets, --split=loo): users with fewer than 3 "
            "items are an error (raise, the default) or dropped (drop).",
        ),
        user_col=flags.DEFINE_string("user_col", None, "csv datasets: the user id column."),
        item_col=flags.DEFINE_string("item_col", None, "csv datasets: the item id column."),
        rating_col=flags.DEFINE_string(
            "rating_col", None, "csv datasets: the rating column (optional)."
        ),
        timestamp_col=flags.DEFINE_string(
            "timestamp_col", None, "csv datasets: the timestamp column (optional)."
        ),
        sep=flags.DEFINE_string("sep", None, "csv datasets: the field separator (default ',')."),
    )


def int_list(values: Sequence[str], name: str, *, positive: bool = False) -> tuple[int, ...]:
    """A comma-list flag's values as ints; ConfigError naming ``--name`` if one is not an int,
    the list is empty, or (`positive`) a value is below 1."""
    try:
        out = tuple(int(v) for v in values)
    except ValueError:
        raise ConfigError(f"--{name}={','.join(values)}: expected integers") from None
    if not out:
        raise ConfigError(f"--{name} is empty: expected at least one integer")
    if positive and min(out) < 1:
        raise ConfigError(f"--{name}={','.join(values)}: expected positive integers")
    return out


def seed_list(values: Sequence[str], name: str = "seeds") -> tuple[int, ...]:
    """A seed list flag (``--seeds=1,2,3``): distinct integers in [0, 2**32), checked with
    :func:`diffrec_jax.seeds.check_seed`; a ConfigError names ``--name`` otherwise (however
    large the number: it is never converted to a machine integer)."""
    out = int_list(values, name)
    for seed in out:
        check_seed(seed, f"--{name}")
    check_distinct(out, f"--{name}", "seed")
    return out


def seed_count(value: int | None, name: str = "seeds", maximum: int = 1000) -> int | None:
    """A number-of-seeds flag (audit's ``--seeds=S``: the seeds 1..S): None, or an integer in
    [1, `maximum`]; a ConfigError names ``--name`` otherwise (so ``--seeds=10**20`` is not an
    OverflowError or a tuple of 10**20 seeds)."""
    if value is not None and not 1 <= value <= maximum:
        raise ConfigError(
            f"--{name}={value}; expected a number of seeds from 1 to {maximum} (the seeds "
            "become 1..S)"
        )
    return value


def check_config_seeds(where: str, **fields: int | Sequence[int]) -> None:
    """Checks the seeds of a configuration file (audit's ``data_seed``, ``tuning_seed``,
    ``seeds``): each in [0, 2**32); a ConfigError names `where` (``--config='file.py'``) and
    the field otherwise."""
    for name, value in fields.items():
        for seed in value if isinstance(value, Sequence) else (value,):
            check_seed(seed, f"{where}: {name}")


def check_ks(values: Sequence[str], name: str = "ks") -> tuple[int, ...]:
    """The metric cutoffs of ``--ks``: positive, distinct integers. A cutoff above the number
    of items is refused once the data is loaded (:func:`diffrec_jax.experiment.check_ks`)."""
    ks = int_list(values, name, positive=True)
    check_distinct(ks, f"--{name}", "cutoff")
    return ks


def no_positional(argv: Sequence[str], script: str) -> None:
    """ConfigError for positional arguments after the script name (a stray word, a flag
    without its ``--``): every script takes flags only."""
    if len(argv) > 1:
        raise ConfigError(
            f"unexpected argument(s) {list(argv[1:])}; {script} takes --flags only (see --help)"
        )


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing; a bad flag is reported as "error: ..." with exit code 2."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


@contextlib.contextmanager
def exit_on_error() -> Iterator[None]:
    """Turns a :class:`DiffrecError` into ``error: <message>`` on stderr and exit status 2."""
    try:
        yield
    except DiffrecError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
