"""Pieces shared by the absl-flag experiment scripts (``experiments/run.py``, ``tune.py``).

The data flags (dataset, data seed, options for raw logs) are defined once here; scripts call
:func:`define_data_flags` at import, parse with :func:`parse_flags` and turn library errors
into ``error: ...`` with exit status 2 through :func:`exit_on_error`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from absl import flags

from diffrec_jax.errors import DiffrecError

DATASET_HELP = (
    "A built-in dataset name (synthetic, synthetic-small, synthetic-sequences), a public dataset "
    "downloaded on first use into $DIFFREC_JAX_CACHE or ~/.cache/diffrec_jax (ml-100k, ml-1m, "
    "ml-20m, ml-25m, amazon-beauty, amazon-baby, amazon-sports, amazon-toys, yelp), or kind:path "
    "with kind in diffrec, sequences, recbole, movielens, csv, amazon, yelp."
)


class DataFlags(NamedTuple):
    """The flag holders of :func:`define_data_flags`."""

    dataset: flags.FlagHolder
    data_seed: flags.FlagHolder
    split: flags.FlagHolder
    rating_threshold: flags.FlagHolder
    kcore: flags.FlagHolder

    def options(self) -> dict[str, Any]:
        """The dataset options given on the command line (split, rating_threshold, kcore)."""
        return {
            name: holder.value
            for name, holder in (
                ("split", self.split),
                ("rating_threshold", self.rating_threshold),
                ("kcore", self.kcore),
            )
            if holder.value is not None
        }


def define_data_flags() -> DataFlags:
    """Defines --dataset, --data_seed, --split, --rating_threshold and --kcore (once per
    process)."""
    return DataFlags(
        dataset=flags.DEFINE_string("dataset", "synthetic", DATASET_HELP),
        data_seed=flags.DEFINE_integer("data_seed", 0, "Seed of synthetic data and random splits."),
        split=flags.DEFINE_enum(
            "split",
            None,
            ["random", "temporal", "global_temporal", "loo"],
            "Split method for raw interaction logs (recbole, movielens, csv).",
        ),
        rating_threshold=flags.DEFINE_float(
            "rating_threshold", None, "Keep ratings >= this value (raw logs); default keeps all."
        ),
        kcore=flags.DEFINE_integer("kcore", None, "Iterative k-core filter on users and items."),
    )


def int_list(values: Sequence[str], name: str, *, positive: bool = False) -> tuple[int, ...]:
    """A comma-list flag's values as ints; DiffrecError naming ``--name`` if one is not an int,
    the list is empty, or (`positive`) a value is below 1."""
    try:
        out = tuple(int(v) for v in values)
    except ValueError:
        raise DiffrecError(f"--{name}={','.join(values)}: expected integers") from None
    if not out:
        raise DiffrecError(f"--{name} is empty: expected at least one integer")
    if positive and min(out) < 1:
        raise DiffrecError(f"--{name}={','.join(values)}: expected positive integers")
    return out


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
