"""A table of malformed inputs: every one must raise the library's own error, naming the place.

Each :class:`Case` writes its bad file(s) into a fresh temporary directory (or needs none),
then either calls the library in-process (`call`) or runs an experiment script in a
subprocess (`script` and `flags`). The expected error type is a
:class:`~diffrec_jax.errors.DiffrecError` subclass and every string of `fragments` must appear
in the message (file names, "line N" / "row N", the flag, what was expected). A script must exit
with code 2 and print one line "error: ..." and no traceback.

The in-process flag cases build the same configuration the scripts build from their flags
(`flags` documents the equivalent command line) and call :func:`diffrec_jax.experiment.run` or
:func:`diffrec_jax.tuning.tune`, which is much faster than a subprocess. Files that try to be
unpickled create the directory ``UNPICKLED`` in the case's temporary directory; the test
checks it never appears.

Single-loader edge cases already covered by tests/data (one bad line per loader, each kind of
corrupt .npy through ``load_diffrec_split``) are not repeated here: this corpus goes through
the user-facing entry points (``load_dataset`` specs, ``run``/``tune`` configs, the scripts).
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from diffrec_jax.data import InteractionMatrix, SequenceDataset, load_dataset
from diffrec_jax.errors import ConfigError, DataError, DiffrecError
from diffrec_jax.experiment import RunConfig, load_config, parse_hparams, run

UNPICKLED = "UNPICKLED"


@dataclasses.dataclass(frozen=True)
class Case:
    """One malformed input.

    Attributes:
      name: the test id.
      error: the expected DiffrecError subclass (scripts: only the message is visible).
      fragments: strings the message must contain.
      write: writes the bad file(s) under the temporary directory and returns the value
        handed to `call` (usually the bad file's path); None when nothing is written.
      call: ``call(tmp, target)`` runs the library in-process; None for script cases.
      script: "run.py", "tune.py", "audit.py" or "merge.py" to run in a subprocess with
        `flags` (run.py and tune.py get --dataset=synthetic-small and --output_dir=tmp/out
        unless `flags` set them, audit.py only the latter).
      flags: script flags (or the equivalent command line of an in-process flag case);
        "{tmp}" is replaced by the temporary directory.
    """

    name: str
    error: type[DiffrecError]
    fragments: tuple[str, ...]
    write: Callable[[Path], Any] | None = None
    call: Callable[[Path, Any], Any] | None = None
    script: str | None = None
    flags: tuple[str, ...] = ()


# -- writers --------------------------------------------------------------------------------------


def text(name: str, content: str | bytes) -> Callable[[Path], Path]:
    """Writes `content` to tmp/name (in a subfolder when name has one); returns the path."""

    def write(tmp: Path) -> Path:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    return write


TRAIN = [[0, 0], [0, 1], [1, 1], [1, 2], [2, 0], [2, 3], [3, 2]]
VALID = [[0, 2], [1, 0], [3, 3]]
TEST = [[0, 3], [2, 1]]


class Tripwire:
    """Unpickling this object creates tmp/UNPICKLED (a directory: nothing is left open)."""

    def __init__(self, tmp: Path):
        self.marker = str(tmp / UNPICKLED)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def npy_bytes(a: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=allow_pickle)
    return buf.getvalue()


def _npy(name: str) -> str:
    return name if name.endswith(".npy") else f"{name}.npy"


def diffrec(
    train=TRAIN, valid=VALID, test=TEST, emb: Any = None, **raw: Callable[[Path], bytes]
) -> Callable[[Path], Path]:
    """A DiffRec folder tmp/toy; `raw` maps a file name to a function returning its bytes."""

    def write(tmp: Path) -> Path:
        folder = tmp / "toy"
        folder.mkdir()
        for part, rows in (("train", train), ("valid", valid), ("test", test)):
            np.save(folder / f"{part}_list.npy", np.asarray(rows, np.int64).reshape(-1, 2))
        if emb is not None:
            np.save(folder / "item_emb.npy", np.asarray(emb))
        for name, make in raw.items():
            if make is None:
                (folder / _npy(name)).unlink()
            else:
                (folder / _npy(name)).write_bytes(make(tmp))
        return folder

    return write


def truncated_header(tmp: Path) -> bytes:
    """A .npy header declaring 10^12 x 2 int64 (16 TB), followed by 16 bytes."""
    buf = io.BytesIO()
    header = {"descr": "<i8", "fortran_order": False, "shape": (10**12, 2)}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + bytes(16)


def npz_bytes(tmp: Path) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, train=np.asarray(TRAIN, np.int64))
    return buf.getvalue()


# -- calls ---------------------------------------------------------------------------------------


def spec(kind: str, **options) -> Callable[[Path, Path], Any]:
    """load_dataset(f"{kind}:{target}", **options)."""
    return lambda tmp, target: load_dataset(f"{kind}:{target}", **options)


def run_flags(
    models=("toppop",), hp=(), dataset="synthetic-small", **fields
) -> Callable[[Path, Any], Any]:
    """run() with the config experiments/run.py builds from --model, --hp and other flags."""

    def call(tmp: Path, target: Any) -> Any:
        config = RunConfig(
            models=tuple(models),
            dataset=dataset,
            hparams=parse_hparams(list(hp), list(models)) if hp else {},
            output_dir=str(tmp / "out"),
            **fields,
        )
        return run(config, progress=lambda line: None)

    return call


def tune_flags(**fields) -> Callable[[Path, Any], Any]:
    """tune() with a tiny EASE search on synthetic-small, `fields` overriding TuneConfig."""

    def call(tmp: Path, target: Any) -> Any:
        from diffrec_jax.tuning import TuneConfig, tune

        config = {
            "models": ("ease",),
            "dataset": "synthetic-small",
            "budget": 2,
            "spaces": {"ease": {"lam": ("float_log", 1.0, 1e4)}},
            "output_dir": str(tmp / "out"),
            **fields,
        }
        return tune(TuneConfig(**config), progress=lambda line: None)

    return call


def output_dir(sub: str) -> Callable[[Path, Any], Any]:
    """run() with --output_dir=tmp/<sub> (tmp/afile is a regular file)."""

    def call(tmp: Path, target: Any) -> Any:
        config = RunConfig(models=("toppop",), dataset="synthetic-small", output_dir=str(tmp / sub))
        return run(config, progress=lambda line: None)

    return call


# -- the corpus ----------------------------------------------------------------------------------

RATINGS_CSV_HEADER = "userId,movieId,rating,timestamp\n"
RECBOLE_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
CSV_COLUMNS = dict(user_col="u", item_col="i")

TEXT_CASES = [
    Case(
        "movielens-dat-comma-delimiter",
        DataError,
        ("ratings.dat", "line 2", "expected 4 columns", "'::'", "got 1"),
        text("ml-1m/ratings.dat", "1::10::4::100\n2,20,5,200\n"),
        spec("movielens"),
    ),
    Case(
        "movielens-udata-missing-timestamp",
        DataError,
        ("u.data", "line 3", "expected 4 columns", "tabs", "got 3"),
        text("ml-100k/u.data", "1\t10\t4\t100\n1\t11\t3\t101\n2\t10\t5\n"),
        spec("movielens"),
    ),
    Case(
        "csv-extra-column",
        DataError,
        ("x.csv", "line 4", "expected 3 columns", "got 4", "'7,8,9,10'"),
        text("x.csv", "u,i,r\n1,2,3\n4,5,6\n7,8,9,10\n"),
        spec("csv", **CSV_COLUMNS),
    ),
    Case(
        "csv-trailing-separator",
        DataError,
        ("x.csv", "line 2", "got 3"),
        text("x.csv", "u,i\n1,2,\n"),
        spec("csv", **CSV_COLUMNS),
    ),
    Case(
        "csv-semicolons-read-as-commas",
        DataError,
        ("x.csv", "line 1", "no column named 'u'", "split on ','", "'u;i;r'"),
        text("x.csv", "u;i;r\n1;2;3\n"),
        spec("csv", **CSV_COLUMNS),
    ),
    Case(
        "recbole-header-typo",
        DataError,
        ("x.inter", "line 1", "no 'item_id' column"),
        text("x.inter", "user_id:token\titem:token\n1\t2\n"),
        spec("recbole"),
    ),
    Case(
        "recbole-string-item-id",
        DataError,
        ("x.inter", "line 3", "item_id 'B00X' is not an integer"),
        text("x.inter", RECBOLE_HEADER + "1\t2\t3\t4\n1\tB00X\t3\t4\n"),
        spec("recbole"),
    ),
    Case(
        "sequences-negative-user",
        DataError,
        ("seq.txt", "line 3", "user id -4 is negative", "non-negative"),
        text("beauty/seq.txt", "1 2\n1 3\n-4 2\n"),
        spec("sequences"),
    ),
    Case(
        "sequences-float-item",
        DataError,
        ("seq.txt", "line 2", "'3.0' is not an integer"),
        text("beauty/seq.txt", "1 2\n2 3.0\n"),
        spec("sequences"),
    ),
    Case(
        "csv-id-beyond-int64",
        DataError,
        ("x.csv", "line 3", "does not fit in int64"),
        text("x.csv", "u,i\n1,2\n3,18446744073709551616\n"),
        spec("csv", **CSV_COLUMNS),
    ),
    Case(
        "ratings-csv-nan-rating",
        DataError,
        ("ratings.csv", "line 3", "rating 'NaN' is not finite"),
        text("ml-20m/ratings.csv", RATINGS_CSV_HEADER + "1,2,4.5,10\n1,3,NaN,11\n"),
        spec("movielens"),
    ),
    Case(
        "udata-negative-infinite-rating",
        DataError,
        ("u.data", "line 2", "rating '-inf' is not finite"),
        text("ml-100k/u.data", "1\t10\t4\t100\n1\t11\t-inf\t101\n"),
        spec("movielens"),
    ),
    Case(
        "recbole-overflowing-rating",
        DataError,
        ("x.inter", "line 2", "rating '1e999' is not finite"),
        text("x.inter", RECBOLE_HEADER + "1\t2\t1e999\t4\n"),
        spec("recbole"),
    ),
    Case(
        "udata-empty-file",
        DataError,
        ("u.data", "file is empty", "user item rating timestamp"),
        text("ml-100k/u.data", ""),
        spec("movielens"),
    ),
    Case(
        "sequences-whitespace-only",
        DataError,
        ("seq.txt", "file is empty"),
        text("beauty/seq.txt", " \n\t\n\n"),
        spec("sequences"),
    ),
    Case(
        "ratings-csv-header-only",
        DataError,
        ("ratings.csv", "line 1", "no data rows"),
        text("ml-20m/ratings.csv", RATINGS_CSV_HEADER),
        spec("movielens"),
    ),
    Case(
        "udata-blank-line-inside",
        DataError,
        ("u.data", "line 2", "got 1"),
        text("ml-100k/u.data", "1\t10\t4\t100\n\n1\t11\t3\t101\n"),
        spec("movielens"),
    ),
    Case(
        "csv-latin1-bytes",
        DataError,
        ("x.csv", "line 3", "not valid UTF-8"),
        text("x.csv", "u,i,title\n1,2,ok\n1,3,caf\xe9\n".encode("latin-1")),
        spec("csv", **CSV_COLUMNS),
    ),
    Case(
        "movielens-missing-file",
        DataError,
        ("u.data", "cannot read file"),
        lambda tmp: tmp / "ml-100k" / "u.data",
        spec("movielens"),
    ),
    Case(
        "movielens-unknown-file-name",
        ConfigError,
        ("cannot infer the MovieLens format", "'ratings.txt'", "format="),
        text("ratings.txt", "1::10::4::100\n"),
        spec("movielens"),
    ),
    Case(
        "csv-duplicate-rows-dedup-error",
        DataError,
        ("x.csv", "row 2", "repeats row 0", "each (user, item) pair once"),
        text("x.csv", "u,i\n1,2\n1,3\n1,2\n"),
        spec("csv", dedup="error", **CSV_COLUMNS),
    ),
    Case(
        "rating-threshold-removes-everything",
        DataError,
        ("x.csv", "rating_threshold=6", "removed every row", "from 1 to 5"),
        text("x.csv", "u,i,r\n1,2,1\n1,3,5\n2,2,4\n"),
        spec("csv", rating_threshold=6, rating_col="r", **CSV_COLUMNS),
    ),
    Case(
        "rating-threshold-without-ratings",
        DataError,
        ("x.csv", "rating_threshold=4", "no rating column"),
        text("x.csv", "u,i\n1,2\n1,3\n"),
        spec("csv", rating_threshold=4, **CSV_COLUMNS),
    ),
    Case(
        "kcore-removes-everything",
        DataError,
        ("x.csv", "kcore=5", "removed all 3 rows", "smaller k"),
        text("x.csv", "u,i\n1,2\n1,3\n2,2\n"),
        spec("csv", kcore=5, **CSV_COLUMNS),
    ),
]

NPY_CASES = [
    Case(
        "diffrec-truncated-train",
        DataError,
        ("train_list.npy", "truncated", "112 bytes of data", "the file holds 100"),
        diffrec(train_list=lambda tmp: npy_bytes(np.asarray(TRAIN, np.int64))[:-12]),
        spec("diffrec"),
    ),
    Case(
        "diffrec-header-declares-16-terabytes",
        DataError,
        ("train_list.npy", "truncated", "(1000000000000, 2)"),
        diffrec(train_list=truncated_header),
        spec("diffrec"),
    ),
    Case(
        "diffrec-pickled-object-array",
        DataError,
        ("valid_list.npy", "object arrays and pickled data are refused"),
        diffrec(
            valid_list=lambda tmp: npy_bytes(np.array([Tripwire(tmp)], object), allow_pickle=True)
        ),
        spec("diffrec"),
    ),
    Case(
        "diffrec-raw-pickle-named-npy",
        DataError,
        ("test_list.npy", "not a readable .npy array"),
        diffrec(test_list=lambda tmp: pickle.dumps([Tripwire(tmp), [0, 3]])),
        spec("diffrec"),
    ),
    Case(
        "diffrec-npz-named-npy",
        DataError,
        ("train_list.npy", "not a readable .npy array"),
        diffrec(train_list=npz_bytes),
        spec("diffrec"),
    ),
    Case(
        "diffrec-empty-valid-file",
        DataError,
        ("valid_list.npy", "not a readable .npy array"),
        diffrec(valid_list=lambda tmp: b""),
        spec("diffrec"),
    ),
    Case(
        "diffrec-pickled-item-emb",
        DataError,
        ("item_emb.npy", "object arrays"),
        diffrec(
            **{
                "item_emb.npy": lambda tmp: npy_bytes(
                    np.array([[Tripwire(tmp)] * 2] * 4, object), allow_pickle=True
                )
            }
        ),
        spec("diffrec"),
    ),
    Case(
        "diffrec-valid-user-missing-from-train",
        DataError,
        ("valid_list.npy", "row 1", "user 1 has no train interaction"),
        diffrec(train=[[0, 0], [0, 1], [2, 1], [2, 2], [3, 0], [3, 3]], valid=[[0, 2], [1, 0]]),
        spec("diffrec"),
    ),
    Case(
        "diffrec-test-user-missing-from-train",
        DataError,
        ("test_list.npy", "row 0", "user 1 has no train interaction"),
        diffrec(
            train=[[0, 0], [0, 1], [2, 1], [2, 2], [3, 0], [3, 3]],
            valid=[[0, 2]],
            test=[[1, 3]],
        ),
        spec("diffrec"),
    ),
    Case(
        "diffrec-test-item-beyond-catalogue",
        DataError,
        ("test_list.npy", "row 1", "item 9 is outside the train index space", "ids 0..3"),
        diffrec(test=[[0, 3], [2, 9]]),
        spec("diffrec"),
    ),
    Case(
        "diffrec-duplicate-train-row",
        DataError,
        ("train_list.npy", "row 7", "repeats row 1"),
        diffrec(train=TRAIN + [[0, 1]]),
        spec("diffrec"),
    ),
    Case(
        "diffrec-pair-in-valid-and-test",
        DataError,
        ("test_list.npy", "row 1", "also in valid_list.npy"),
        diffrec(test=[[0, 3], [3, 3]]),
        spec("diffrec"),
    ),
    Case(
        "diffrec-item-emb-wrong-catalogue",
        DataError,
        ("item_emb.npy", "expected 4 rows (one per item)"),
        diffrec(emb=np.ones((5, 2), np.float32)),
        spec("diffrec"),
    ),
    Case(
        "diffrec-item-emb-inf",
        DataError,
        ("item_emb.npy", "row 2", "non-finite"),
        diffrec(emb=np.array([[0, 0], [1, 1], [np.inf, 0], [2, 2]], np.float32)),
        spec("diffrec"),
    ),
    Case(
        "diffrec-float-ids",
        DataError,
        ("train_list.npy", "dtype float64", "integer"),
        diffrec(train_list=lambda tmp: npy_bytes(np.asarray(TRAIN, np.float64))),
        spec("diffrec"),
    ),
    Case(
        "diffrec-one-dimensional",
        DataError,
        ("valid_list.npy", "shape (6,)", "(n, 2)"),
        diffrec(valid_list=lambda tmp: npy_bytes(np.asarray(VALID, np.int64).ravel())),
        spec("diffrec"),
    ),
    Case(
        "diffrec-missing-test-file",
        DataError,
        ("test_list.npy", "file not found"),
        diffrec(test_list=None),
        spec("diffrec"),
    ),
    Case(
        "matrix-item-beyond-declared-shape",
        DataError,
        ("<memory>", "row 2", "item index 7 out of range; expected < 5"),
        None,
        lambda tmp, target: InteractionMatrix.from_arrays([0, 1, 2], [0, 4, 7], shape=(3, 5)),
    ),
    Case(
        "sequences-item-beyond-declared-catalogue",
        DataError,
        ("row 3", "item index 9 out of range", "n_items=6"),
        None,
        lambda tmp, target: SequenceDataset(np.array([0, 2, 4]), np.array([0, 1, 5, 9]), 6),
    ),
]


def closed_port_url(tmp: Path) -> str:
    """A URL on a local port nobody listens on (the "no network" case)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/ml-1m.zip"


def offline_fetch(tmp: Path, url: str) -> Any:
    from diffrec_jax.data import registry

    entry = dataclasses.replace(registry.get("ml-1m"), url=url)
    return registry.fetch(entry, cache_dir=tmp / "cache", timeout=10, log=lambda line: None)


REGISTRY_CASES = [
    Case(
        "registry-unknown-name",
        ConfigError,
        ("unknown public dataset 'ml-2m'", "ml-1m"),
        call=lambda tmp, target: load_dataset("registry:ml-2m", cache_dir=tmp / "cache"),
    ),
    Case(
        "registry-yelp-not-placed-by-hand",
        DataError,
        ("https://www.yelp.com/dataset", "yelp/yelp_academic_dataset_review.json", "place it"),
        call=lambda tmp, target: load_dataset("yelp", cache_dir=tmp / "cache"),
    ),
    Case(
        "registry-offline",
        DataError,
        ("http://127.0.0.1:", "no network?", "cache/ml-1m/ml-1m.zip", "place it at"),
        closed_port_url,
        offline_fetch,
    ),
    Case(
        "registry-bad-download-option",
        ConfigError,
        ("download='no'", "True or False"),
        call=lambda tmp, target: load_dataset("ml-1m", cache_dir=tmp / "cache", download="no"),
    ),
]

BAD_CONFIG_SYNTAX = "from diffrec_jax.experiment import RunConfig\ndef get_config(:\n"
BAD_CONFIG_RAISES = (
    "from diffrec_jax.experiment import RunConfig\n\ndef get_config():\n"
    "    raise RuntimeError('no dataset chosen')\n"
)

FLAG_CASES = [
    Case(
        "flag-noise-min-above-noise-max",
        ConfigError,
        ("noise_min must be <= noise_max", "noise_min=0.1", "noise_max=0.01"),
        call=run_flags(("diffrec",), ["noise_min=0.1", "noise_max=0.01"]),
        flags=("--model=diffrec", "--hp=noise_min=0.1", "--hp=noise_max=0.01"),
    ),
    Case(
        "flag-steps-zero",
        ConfigError,
        ("steps >= 1", "steps=0"),
        call=run_flags(("diffrec",), ["diffrec.steps=0"]),
        flags=("--model=diffrec", "--hp=diffrec.steps=0"),
    ),
    Case(
        "flag-sampling-steps-above-steps",
        ConfigError,
        ("sampling_steps <= steps", "sampling_steps=10", "steps=5"),
        call=run_flags(("diffrec",), ["steps=5", "sampling_steps=10"]),
        flags=("--model=diffrec", "--hp=steps=5", "--hp=sampling_steps=10"),
    ),
    Case(
        "flag-empty-dims",
        ConfigError,
        ("dims must be a non-empty sequence",),
        call=run_flags(("diffrec",), ["dims=[]"]),
        flags=("--model=diffrec", "--hp=dims=[]"),
    ),
    Case(
        "flag-max-epochs-zero",
        ConfigError,
        ("max_epochs must be a positive int", "got 0"),
        call=run_flags(("diffrec",), ["max_epochs=0"]),
        flags=("--model=diffrec", "--hp=max_epochs=0"),
    ),
    Case(
        "flag-ease-infinite-lambda",
        ConfigError,
        ("EASE needs a finite lam > 0", "lam=inf"),
        call=run_flags(("ease",), ["lam=inf"]),
        flags=("--model=ease", "--hp=lam=inf"),
    ),
    Case(
        "flag-unknown-model",
        ConfigError,
        ("unknown model 'diffrecc'", "diffrec"),
        call=run_flags(("toppop", "diffrecc")),
        flags=("--model=toppop,diffrecc",),
    ),
    Case(
        "flag-unknown-dataset",
        ConfigError,
        ("unknown dataset 'movielens-2m'", "synthetic-small"),
        call=run_flags(dataset="movielens-2m"),
        flags=("--dataset=movielens-2m",),
    ),
    Case(
        "flag-unknown-hyperparameter",
        ConfigError,
        ("--hp='ease.alpha=1'", "no hyperparameter 'alpha'", "lam"),
        call=run_flags(("ease",), ["ease.alpha=1"]),
        flags=("--model=ease", "--hp=ease.alpha=1"),
    ),
    Case(
        "flag-unparsable-bool",
        ConfigError,
        ("--hp='diffrec.norm=maybe'", "cannot read 'maybe' as bool"),
        call=run_flags(("diffrec",), ["diffrec.norm=maybe"]),
        flags=("--model=diffrec", "--hp=diffrec.norm=maybe"),
    ),
    Case(
        "flag-empty-model-list",
        ConfigError,
        ("--model is empty",),
        call=run_flags(()),
        flags=("--model=",),
    ),
    Case(
        "flag-model-twice",
        ConfigError,
        ("--model=toppop,ease,toppop", "'toppop' more than once"),
        call=run_flags(("toppop", "ease", "toppop")),
        flags=("--model=toppop,ease,toppop",),
    ),
    Case(
        "flag-seed-twice",
        ConfigError,
        ("--seeds=1,2,1", "seed 1 more than once"),
        call=run_flags(seeds=(1, 2, 1)),
        flags=("--seeds=1,2,1",),
    ),
    Case(
        "flag-negative-data-seed",
        ConfigError,
        ("--data_seed=-1", "non-negative integer"),
        call=run_flags(data_seed=-1),
        flags=("--data_seed=-1",),
    ),
    Case(
        "flag-unknown-select-metric",
        ConfigError,
        ("--select_metric='AUC'", "Recall@20"),
        call=run_flags(select_metric="AUC"),
        flags=("--select_metric=AUC",),
    ),
    Case(
        "flag-output-dir-under-a-file",
        ConfigError,
        ("--output_dir=", "afile/results", "not a writable directory", "Not a directory"),
        text("afile", "not a directory\n"),
        output_dir("afile/results"),
        flags=("--output_dir={tmp}/afile/results",),
    ),
    Case(
        "flag-output-dir-is-a-file",
        ConfigError,
        ("--output_dir=", "afile", "not a writable directory"),
        text("afile", "not a directory\n"),
        output_dir("afile"),
        flags=("--output_dir={tmp}/afile",),
    ),
    Case(
        "flag-config-syntax-error",
        ConfigError,
        ("--config=", "bad_config.py", "line 2", "SyntaxError"),
        text("bad_config.py", BAD_CONFIG_SYNTAX),
        lambda tmp, target: load_config(target),
        flags=("--config={tmp}/bad_config.py",),
    ),
    Case(
        "flag-config-raises",
        ConfigError,
        ("--config=", "bad_config.py", "line 4", "RuntimeError: no dataset chosen"),
        text("bad_config.py", BAD_CONFIG_RAISES),
        lambda tmp, target: load_config(target),
        flags=("--config={tmp}/bad_config.py",),
    ),
    Case(
        "flag-config-not-python",
        ConfigError,
        ("--config=", "config.json", "not a Python file"),
        text("config.json", '{"models": ["ease"]}\n'),
        lambda tmp, target: load_config(target),
        flags=("--config={tmp}/config.json",),
    ),
    Case(
        "tune-model-twice",
        ConfigError,
        ("models=['ease', 'ease']", "'ease' more than once"),
        call=tune_flags(models=("ease", "ease")),
        flags=("--model=ease,ease",),
    ),
    Case(
        "tune-negative-data-seed",
        ConfigError,
        ("data_seed=-2", "non-negative integer"),
        call=tune_flags(data_seed=-2),
        flags=("--data_seed=-2",),
    ),
    Case(
        "tune-fixed-noise-min-above-noise-max",
        ConfigError,
        ("no trial of diffrec finished", "noise_min must be <= noise_max", "noise_min=0.1"),
        call=tune_flags(
            models=("diffrec",),
            spaces={"diffrec": {"lr": ("float_log", 1e-4, 1e-3)}},
            fixed={"diffrec": {"noise_min": 0.1, "noise_max": 0.01}},
        ),
        flags=("--model=diffrec", "--fixed=noise_min=0.1", "--fixed=noise_max=0.01"),
    ),
]

SCRIPT_CASES = [
    Case(
        "script-run-steps-zero",
        ConfigError,
        ("steps=0",),
        script="run.py",
        flags=("--model=diffrec", "--hp=diffrec.steps=0"),
    ),
    Case(
        "script-run-bad-ratings-line",
        DataError,
        ("ratings.dat, line 2", "expected 4 columns"),
        text("ml-1m/ratings.dat", "1::10::4::100\n2::20::5\n"),
        script="run.py",
        flags=("--dataset=movielens:{tmp}/ml-1m/ratings.dat",),
    ),
    Case(
        "script-run-unparsable-flag",
        ConfigError,
        ("flag --data_seed=abc", "invalid literal for int()"),
        script="run.py",
        flags=("--data_seed=abc",),
    ),
    Case(
        "script-tune-truncated-npy",
        DataError,
        ("train_list.npy", "truncated"),
        diffrec(train_list=lambda tmp: npy_bytes(np.asarray(TRAIN, np.int64))[:-12]),
        script="tune.py",
        flags=("--model=ease", "--dataset=diffrec:{tmp}/toy"),
    ),
]


def _topic_cases() -> tuple[list[Case], list[Case]]:
    """The cases of every ``cases_<topic>.py`` module beside this one (its ``CASES`` list):
    (in-process cases, script cases)."""
    in_process, scripts = [], []
    for path in sorted(Path(__file__).parent.glob("cases_*.py")):
        module = importlib.import_module(path.stem)
        for case in module.CASES:
            (scripts if case.script is not None else in_process).append(case)
    return in_process, scripts


_TOPIC_CASES, _TOPIC_SCRIPT_CASES = _topic_cases()
SCRIPT_CASES += _TOPIC_SCRIPT_CASES
CASES: list[Case] = (
    TEXT_CASES + NPY_CASES + REGISTRY_CASES + FLAG_CASES + _TOPIC_CASES + SCRIPT_CASES
)
