"""Merges results files of one experiment, e.g. seeds run in parallel, and prints the table.

  python experiments/merge.py --output=results/beauty.json \\
      results/sasrec-seed1/*.json results/sasrec-seed2/*.json

The files must share the dataset, split and evaluation protocol, and each model its
hyperparameters; every (model, seed) run may appear once. The merged file has the runs of all
files, the summary (mean ± std over seeds) recomputed over them, and each file's own config.
--output may not be one of the files being merged.

Bad input (no files, a file that is not a results file, files of different experiments,
--output naming an input) is reported as one line "error: <message>" on stderr with exit
status 2, and nothing is written.
"""

from __future__ import annotations

import logging
from pathlib import Path

from absl import app, flags

from diffrec_jax import cli
from diffrec_jax.errors import ConfigError
from diffrec_jax.experiment import check_merge_output, format_table, merge_results, read_results
from diffrec_jax.results import ensure_writable_dir, write_json_atomic

_OUTPUT = flags.DEFINE_string(
    "output",
    None,
    "Path of the merged results file (JSON); not one of the input files (default: only print "
    "the table).",
)


def main(argv: list[str]) -> None:
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    paths = argv[1:]
    with cli.exit_on_error():
        if not paths:
            raise ConfigError(
                "no results files given; expected the files to merge as arguments: "
                "merge.py [--output=FILE] results1.json results2.json ..."
            )
        if _OUTPUT.value:
            check_merge_output(_OUTPUT.value, paths)
        merged = merge_results([(p, read_results(p)) for p in paths])
        if _OUTPUT.value:
            ensure_writable_dir(Path(_OUTPUT.value).parent, "output")
            write_json_atomic(_OUTPUT.value, merged)
    print(format_table(merged, merged["evaluation"]["ks"]))
    if _OUTPUT.value:
        print(f"merged results written to {_OUTPUT.value}")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
