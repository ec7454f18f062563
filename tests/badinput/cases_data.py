"""Malformed data (project issue 18): sizes that would exhaust memory, ids that overflow, lenient
number parsing, trailing bytes, repeated JSON keys and ratings that are all zero.

Memory cases patch :func:`diffrec_jax.data.guards.available_memory` to 1 GiB so that the refusal
does not depend on the machine (and nothing large is ever allocated).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from corpus import TEST, TRAIN, Case, diffrec, npy_bytes, run_flags, spec, text

from diffrec_jax.errors import ConfigError, DataError
from diffrec_jax.experiment import RunConfig, run

GIB = 2**30


def small_memory(call: Callable[[Path, Any], Any], nbytes: int = GIB) -> Callable[[Path, Any], Any]:
    """`call` with the available memory reported as `nbytes`."""

    def patched(tmp: Path, target: Any) -> Any:
        with mock.patch("diffrec_jax.data.guards.available_memory", return_value=nbytes):
            return call(tmp, target)

    return patched


def run_on_folder(model: str) -> Callable[[Path, Any], Any]:
    """run() of `model` on the DiffRec folder the case wrote (--dataset=diffrec:<folder>)."""

    def call(tmp: Path, target: Any) -> Any:
        config = RunConfig(
            models=(model,), dataset=f"diffrec:{target}", output_dir=str(tmp / "out")
        )
        return run(config, progress=lambda line: None)

    return call


def reviews(*objects: str) -> Callable[[Path], Path]:
    return text("reviews_Beauty_5.json", "".join(o + "\n" for o in objects))


def review(user: str, item: str, **extra: Any) -> str:
    row = {"reviewerID": user, "asin": item, "overall": 5.0, "unixReviewTime": 1, **extra}
    return json.dumps(row)


CASES = [
    Case(
        "diffrec-user-id-1e12-refused-before-allocating",
        DataError,
        (
            "train_list.npy",
            "row 7",
            "user id 1000000000000",
            "1,000,000,000,001 users",
            "TiB",
            "only 5 distinct users",
            "dense user ids 0..n-1",
        ),
        diffrec(train=TRAIN + [[10**12, 1]]),
        spec("diffrec"),
    ),
    Case(
        "diffrec-item-id-2-to-62-no-false-duplicate",
        DataError,
        ("train_list.npy", "row 7", "item id 4611686018427387904", "dense item ids"),
        diffrec(train=TRAIN + [[2, 2**62]], test=[[0, 3], [2, 1], [1, 3]]),
        spec("diffrec"),
    ),
    Case(
        "ease-item-id-200000-gram-too-large",
        ConfigError,
        ("EASE with n_items=200,001", "298.0 GiB", "1.0 GiB of memory available"),
        diffrec(train=TRAIN + [[3, 200_000]]),
        small_memory(run_on_folder("ease")),
        flags=("--model=ease", "--dataset=diffrec:{tmp}/toy"),
    ),
    Case(
        "flag-batch-size-1e9-refused-before-allocating",
        ConfigError,
        ("batch_size=1,000,000,000", "745.1 GiB", "n_items=200", "at most the 300 training"),
        call=small_memory(run_flags(("multvae",), ["batch_size=1000000000", "max_epochs=1"])),
        flags=("--model=multvae", "--hp=batch_size=1000000000"),
    ),
    Case(
        "diffrec-npy-trailing-bytes",
        DataError,
        ("valid_list.npy", "24 trailing bytes", "48 bytes of data", "the file holds 72"),
        diffrec(valid_list=lambda tmp: npy_bytes(np.asarray([[0, 2], [1, 0], [3, 3]])) + bytes(24)),
        spec("diffrec"),
    ),
    Case(
        "diffrec-two-arrays-in-one-npy",
        DataError,
        ("test_list.npy", "trailing bytes", "the header declares shape (2, 2)"),
        diffrec(
            test_list=lambda tmp: (
                npy_bytes(np.asarray(TEST, np.int64)) + npy_bytes(np.asarray(TEST, np.int64))
            )
        ),
        spec("diffrec"),
    ),
    Case(
        "csv-digit-group-underscore-id",
        DataError,
        ("x.csv", "line 3", "i '1_000' is not an integer", "ASCII digits 0-9"),
        text("x.csv", "u,i\n1,2\n1,1_000\n2,2\n"),
        spec("csv", user_col="u", item_col="i"),
    ),
    Case(
        "sequences-arabic-indic-digits",
        DataError,
        ("seq.txt", "line 2", "user id '\u0661\u0662' is not an integer", "ASCII digits"),
        text("beauty/seq.txt", "12 2\n\u0661\u0662 3\n12 4\n"),
        spec("sequences"),
    ),
    Case(
        "udata-underscore-timestamp",
        DataError,
        ("u.data", "line 2", "timestamp '881_250_949' is not a number", "ASCII digits"),
        text("ml-100k/u.data", "1\t10\t4\t881250948\n1\t11\t3\t881_250_949\n"),
        spec("movielens"),
    ),
    Case(
        "recbole-fullwidth-digit-rating",
        DataError,
        ("x.inter", "line 2", "rating '\uff14' is not a number"),
        text(
            "x.inter",
            "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\t\uff14\t4\n",
        ),
        spec("recbole"),
    ),
    Case(
        "amazon-duplicate-json-key",
        DataError,
        ("reviews_Beauty_5.json", "line 2", "key 'reviewerID' twice"),
        reviews(
            review("A1", "B1"),
            '{"reviewerID": "A2", "asin": "B2", "overall": 4.0, "unixReviewTime": 2, '
            '"reviewerID": "A1"}',
        ),
        spec("amazon"),
    ),
    Case(
        "yelp-arabic-indic-year",
        DataError,
        ("review.json", "line 2", "field 'date'", "expected a date like '%Y-%m-%d %H:%M:%S'"),
        text(
            "review.json",
            "".join(
                json.dumps({"user_id": u, "business_id": "b", "stars": 4, "date": d}) + "\n"
                for u, d in (("u1", "2015-01-02 03:04:05"), ("u2", "\u0662015-01-02 03:04:05"))
            ),
        ),
        spec("yelp"),
    ),
    Case(
        "csv-all-zero-ratings-with-use-ratings",
        DataError,
        ("x.csv", "use_ratings=True", "every one of the 4 ratings is 0"),
        text("x.csv", "u,i,r\n1,2,0\n1,3,0\n2,2,0.0\n2,3,0\n"),
        spec("csv", user_col="u", item_col="i", rating_col="r", use_ratings=True),
    ),
]
