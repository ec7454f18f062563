"""Bad flags of the experiment scripts (project issue 18): seeds, repeated flags, cutoffs,
options that do nothing, unwritable output directories, stray arguments, merge outputs.

Most cases are in-process: they call the function the script calls on its flag (``diffrec_jax.cli``
for the checks made before any library call, ``run``/``tune`` with the config the script builds,
``check_merge_output`` for merge.py); `flags` gives the equivalent command line. The three script
cases cover what only a subprocess shows: exit status 2 and one ``error:`` line instead of absl's
usage dump for a stray argument and for merge.py without files, and the csv column flags reaching
the dataset.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from corpus import Case, run_flags, text, tune_flags

from diffrec_jax import cli
from diffrec_jax.errors import ConfigError, DataError
from diffrec_jax.experiment import check_merge_output
from diffrec_jax.seeds import check_seed

REPO = Path(__file__).resolve().parents[2]


def cli_call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[Path, Any], Any]:
    """``function(*args, **kwargs)``: a check the script makes on its flags."""
    return lambda tmp, target: function(*args, **kwargs)


# -- a read-only output directory ---------------------------------------------------------------


@contextlib.contextmanager
def read_only(folder: Path, loader: str) -> Iterator[None]:
    """`folder` made read-only (mode 0o555) for the duration; the dataset loader `loader`
    ("module.load_dataset") fails the test if it is called (the check must come first).

    Root ignores directory permissions, so under root creating a file in a folder without write
    bits is made to fail as it would for anyone else (PermissionError, as the OS would raise).
    """
    import tempfile

    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    real = tempfile.NamedTemporaryFile

    def named_temporary_file(*args: Any, **kwargs: Any) -> Any:
        where = Path(kwargs.get("dir") or ".")
        if not os.stat(where).st_mode & 0o200:
            raise PermissionError(13, "Permission denied", str(where))
        return real(*args, **kwargs)

    def no_load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the data was loaded before --output_dir was found unwritable")

    try:
        with contextlib.ExitStack() as stack:
            if os.geteuid() == 0:
                target = "diffrec_jax.results.tempfile.NamedTemporaryFile"
                stack.enter_context(mock.patch(target, named_temporary_file))
            stack.enter_context(mock.patch(loader, no_load))
            yield
    finally:
        folder.chmod(0o755)


def read_only_run(tmp: Path, target: Any) -> Any:
    with read_only(tmp / "out", "diffrec_jax.experiment.run.load_dataset"):
        return run_flags()(tmp, target)


def read_only_tune(tmp: Path, target: Any) -> Any:
    with read_only(tmp / "out", "diffrec_jax.tuning.runner.load_dataset"):
        return tune_flags()(tmp, target)


def read_only_audit(tmp: Path, target: Any) -> Any:
    from diffrec_jax.audit import load_config, run_audit, scaled

    config = scaled(
        load_config(REPO / "experiments" / "configs" / "audit_tiny.py"),
        output_dir=str(tmp / "out"),
    )
    with read_only(tmp / "out", "diffrec_jax.audit.runner.load_dataset"):
        return run_audit(config, progress=lambda line: None)


# -- merge.py -----------------------------------------------------------------------------------


def merge_into_input(tmp: Path, target: Any) -> Any:
    """merge.py --output=a.json a.json b.json (an input written as the same path another way)."""
    a, b = tmp / "a.json", tmp / "b.json"
    a.write_text("{}\n")
    b.write_text("{}\n")
    return check_merge_output(str(tmp / "sub" / ".." / "a.json"), [str(a), str(b)])


def merge_into_link(tmp: Path, target: Any) -> Any:
    """merge.py --output=link.json a.json, link.json a symbolic link to a.json."""
    a = tmp / "a.json"
    a.write_text("{}\n")
    (tmp / "link.json").symlink_to(a)
    return check_merge_output(str(tmp / "link.json"), [str(a)])


CSV = "u,i,r\n1,2,3\n1,3,4\n2,2,5\n2,4,5\n3,3,1\n3,4,2\n"

CASES = [
    # 1. seeds
    Case(
        "cli-seeds-negative",
        ConfigError,
        ("--seeds=-1", "non-negative integer below 2**32"),
        call=cli_call(cli.seed_list, ["-1"], "seeds"),
        flags=("--seeds=-1",),
    ),
    Case(
        "cli-seeds-above-uint64",
        ConfigError,
        ("--seeds=18446744073709551616", "below 2**32"),
        call=cli_call(cli.seed_list, ["18446744073709551616"], "seeds"),
        flags=("--seeds=18446744073709551616",),
    ),
    Case(
        "cli-seeds-2-to-the-32",
        ConfigError,
        ("--seeds=4294967296", "below 2**32"),
        call=cli_call(cli.seed_list, ["0", "4294967296"], "seeds"),
        flags=("--seeds=0,4294967296",),
    ),
    Case(
        "cli-seeds-not-integers",
        ConfigError,
        ("--seeds=1,x", "expected integers"),
        call=cli_call(cli.seed_list, ["1", "x"], "seeds"),
        flags=("--seeds=1,x",),
    ),
    Case(
        "run-seed-2-to-the-64",
        ConfigError,
        ("--seeds=18446744073709551616", "below 2**32"),
        call=run_flags(seeds=(2**64,)),
        flags=("--seeds=18446744073709551616",),
    ),
    Case(
        "tune-seed-negative",
        ConfigError,
        ("--seed=-1", "non-negative integer below 2**32"),
        call=cli_call(check_seed, -1, "--seed"),
        flags=("--seed=-1",),
    ),
    Case(
        "tune-seed-2-to-the-64-library",
        ConfigError,
        ("seed=18446744073709551616", "below 2**32"),
        call=tune_flags(seed=2**64),
        flags=("--seed=18446744073709551616",),
    ),
    Case(
        "audit-seeds-count-huge",
        ConfigError,
        ("--seeds=18446744073709551616", "from 1 to 1000"),
        call=cli_call(cli.seed_count, 2**64, "seeds"),
        flags=("--seeds=18446744073709551616",),
    ),
    Case(
        "audit-seeds-count-negative",
        ConfigError,
        ("--seeds=-1", "from 1 to 1000"),
        call=cli_call(cli.seed_count, -1, "seeds"),
        flags=("--seeds=-1",),
    ),
    Case(
        "audit-config-tuning-seed-2-to-the-64",
        ConfigError,
        ("--config='audit.py': tuning_seed=18446744073709551616", "below 2**32"),
        call=cli_call(cli.check_config_seeds, "--config='audit.py'", tuning_seed=2**64),
        flags=("--config={tmp}/audit.py",),
    ),
    Case(
        "audit-config-seeds-negative",
        ConfigError,
        ("--config='audit.py': seeds=-1", "non-negative"),
        call=cli_call(cli.check_config_seeds, "--config='audit.py'", seeds=(1, -1)),
        flags=("--config={tmp}/audit.py",),
    ),
    # 2. a hyperparameter given twice; merge.py --output naming an input
    Case(
        "flag-hp-given-twice",
        ConfigError,
        ("--hp='lam=5000'", "already set by --hp='lam=1'", "'lam'", "'ease'"),
        call=run_flags(("ease",), ["lam=1", "lam=5000"]),
        flags=("--model=ease", "--hp=lam=1", "--hp=lam=5000"),
    ),
    Case(
        "flag-hp-given-twice-same-text",
        ConfigError,
        ("--hp='lam=1'", "already set by --hp='lam=1'"),
        call=run_flags(("ease",), ["lam=1", "lam=1"]),
        flags=("--model=ease", "--hp=lam=1", "--hp=lam=1"),
    ),
    Case(
        "flag-hp-given-with-and-without-model",
        ConfigError,
        ("--hp='ease.lam=2'", "already set by --hp='lam=1'"),
        call=run_flags(("ease",), ["lam=1", "ease.lam=2"]),
        flags=("--model=ease", "--hp=lam=1", "--hp=ease.lam=2"),
    ),
    Case(
        "tune-fixed-given-twice",
        ConfigError,
        ("--fixed='ease.lam=3'", "already set by --fixed='lam=2'"),
        call=lambda tmp, target: __import__("diffrec_jax.tuning").tuning.parse_fixed_flags(
            ["lam=2", "ease.lam=3"], ["ease"]
        ),
        flags=("--model=ease", "--fixed=lam=2", "--fixed=ease.lam=3"),
    ),
    Case(
        "tune-space-given-twice",
        ConfigError,
        ("--space='lam=float:2:3'", "already set by --space='lam=float_log:1:10'"),
        call=lambda tmp, target: __import__("diffrec_jax.tuning").tuning.parse_space_flags(
            ["lam=float_log:1:10", "lam=float:2:3"], ["ease"]
        ),
        flags=("--model=ease", "--space=lam=float_log:1:10", "--space=lam=float:2:3"),
    ),
    Case(
        "merge-output-is-an-input",
        ConfigError,
        ("--output=", "a.json", "is the input", "replace a file being merged"),
        call=merge_into_input,
        flags=("--output={tmp}/sub/../a.json", "{tmp}/a.json", "{tmp}/b.json"),
    ),
    Case(
        "merge-output-links-to-an-input",
        ConfigError,
        ("--output=", "link.json", "is the input", "a.json"),
        call=merge_into_link,
        flags=("--output={tmp}/link.json", "{tmp}/a.json"),
    ),
    # 3. a read-only --output_dir, found before the data is loaded
    Case(
        "run-output-dir-read-only",
        ConfigError,
        ("--output_dir=", "not a writable directory", "Permission denied"),
        call=read_only_run,
        flags=("--output_dir={tmp}/out",),
    ),
    Case(
        "tune-output-dir-read-only",
        ConfigError,
        ("--output_dir=", "not a writable directory", "Permission denied"),
        call=read_only_tune,
        flags=("--output_dir={tmp}/out",),
    ),
    Case(
        "audit-output-dir-read-only",
        ConfigError,
        ("--output_dir=", "not a writable directory", "Permission denied"),
        call=read_only_audit,
        flags=("--output_dir={tmp}/out",),
    ),
    # 4. cutoffs, --exclude_history, data options, model hyperparameters
    Case(
        "cli-ks-repeated",
        ConfigError,
        ("--ks=10,10,20", "cutoff 10 more than once"),
        call=cli_call(cli.check_ks, ["10", "10", "20"], "ks"),
        flags=("--ks=10,10,20",),
    ),
    Case(
        "run-ks-repeated",
        ConfigError,
        ("--ks=10,10,20", "cutoff 10 more than once"),
        call=run_flags(ks=(10, 10, 20)),
        flags=("--ks=10,10,20",),
    ),
    Case(
        "run-ks-above-n-items",
        ConfigError,
        ("--ks=20,100000", "cutoff 100000", "n_items=200"),
        call=run_flags(ks=(20, 100000)),
        flags=("--ks=20,100000", "--dataset=synthetic-small"),
    ),
    Case(
        "tune-ks-above-n-items",
        ConfigError,
        ("ks=10,20,100000", "cutoff 100000", "n_items=200"),
        call=tune_flags(ks=(10, 20, 100000)),
        flags=("--ks=10,20,100000", "--dataset=synthetic-small"),
    ),
    Case(
        "tune-ks-repeated",
        ConfigError,
        ("ks=20,20", "cutoff 20 more than once"),
        call=tune_flags(ks=(20, 20)),
        flags=("--ks=20,20",),
    ),
    Case(
        "run-exclude-history-without-sequential-model",
        ConfigError,
        ("--exclude_history", "no model of --model=toppop,ease is sequential"),
        call=run_flags(("toppop", "ease"), exclude_history=True),
        flags=("--model=toppop,ease", "--exclude_history"),
    ),
    Case(
        "cli-stray-positional-argument",
        ConfigError,
        ("unexpected argument(s) ['stray']", "--flags only"),
        call=cli_call(cli.no_positional, ["run.py", "stray"], "run.py"),
        flags=("stray",),
    ),
    Case(
        "cli-rating-threshold-nan",
        ConfigError,
        ("--rating_threshold=nan", "finite number"),
        call=cli_call(cli.check_data_options, {"rating_threshold": float("nan")}),
        flags=("--rating_threshold=nan",),
    ),
    Case(
        "cli-kcore-negative",
        ConfigError,
        ("--kcore=-3", "positive integer"),
        call=cli_call(cli.check_data_options, {"kcore": -3}),
        flags=("--kcore=-3",),
    ),
    Case(
        "cli-user-col-empty",
        ConfigError,
        ("--user_col is empty",),
        call=cli_call(cli.check_data_options, {"user_col": ""}),
        flags=("--user_col=",),
    ),
    Case(
        "flag-puresvd-factors-above-items",
        ConfigError,
        ("--hp for model 'puresvd'", "factors=5000", "maximum 200", "1 <= factors <= 200"),
        call=run_flags(("puresvd",), ["factors=5000"]),
        flags=("--model=puresvd", "--hp=factors=5000"),
    ),
    Case(
        "flag-itemknn-topk-zero",
        ConfigError,
        ("--hp for model 'itemknn'", "topk=0", "positive integer"),
        call=run_flags(("itemknn",), ["topk=0"]),
        flags=("--model=itemknn", "--hp=topk=0"),
    ),
    Case(
        "flag-diffrec-dims-zero",
        ConfigError,
        ("--hp for model 'diffrec'", "dims=(0,)", "positive ints", "hidden layer sizes"),
        call=run_flags(("diffrec",), ["dims=[0]"]),
        flags=("--model=diffrec", "--hp=dims=[0]"),
    ),
    # scripts: exit status 2 and one error line where absl printed its usage and exited 1
    Case(
        "script-run-stray-argument",
        ConfigError,
        ("unexpected argument(s) ['stray']", "run.py takes --flags only"),
        script="run.py",
        flags=("--model=toppop", "stray"),
    ),
    Case(
        "script-merge-no-files",
        ConfigError,
        ("no results files given", "merge.py"),
        script="merge.py",
    ),
    Case(
        "script-run-csv-column-flags",
        DataError,
        ("x.csv", "no column named 'item'"),
        text("x.csv", CSV),
        script="run.py",
        flags=("--model=toppop", "--dataset=csv:{tmp}/x.csv", "--user_col=u", "--item_col=item"),
    ),
]
