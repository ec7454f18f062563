"""Bad input for the download registry that needs no network: an unverified download without
the opt-in, a decompression bomb and a truncated .gz placed in the cache by hand, bad limits.

(The cases that need a server, such as a transfer without a Content-Length or one slower than
its deadline, are in tests/data/test_registry.py.)
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any
from unittest import mock

from corpus import Case

from diffrec_jax.data import load_dataset, registry
from diffrec_jax.errors import ConfigError, DataError

AMAZON_GZ = "cache/amazon-beauty/reviews_Beauty_5.json.gz"
REVIEW = b'{"reviewerID": "A1", "asin": "B1", "overall": 5.0, "unixReviewTime": 1}\n'


def _placed(content: bytes):
    def write(tmp: Path) -> Path:
        path = tmp / AMAZON_GZ
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return path

    return write


def _fetch_without_opt_in(tmp: Path, target: Any) -> Any:
    with mock.patch.dict(os.environ):
        os.environ.pop(registry.ALLOW_UNVERIFIED_ENV, None)
        return registry.fetch("amazon-beauty", cache_dir=tmp / "cache", log=lambda line: None)


def _load_amazon(tmp: Path, target: Any) -> Any:
    return load_dataset("amazon-beauty", cache_dir=tmp / "cache")


_WHOLE = gzip.compress(REVIEW * 50)

CASES = [
    Case(
        "registry-unverified-download-without-opt-in",
        DataError,
        (
            "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
            "reviews_Beauty_5.json.gz",
            "no published sha256",
            "allow_unverified=True",
            registry.ALLOW_UNVERIFIED_ENV,
            f"place it at {{tmp}}/{AMAZON_GZ}",
        ),
        call=_fetch_without_opt_in,
    ),
    Case(
        "registry-gzip-bomb-placed-by-hand",
        DataError,
        (
            f"{{tmp}}/{AMAZON_GZ}: ",
            "reviews_Beauty_5.json decompresses to more than",
            "max_ratio=100",
            "decompression bomb",
        ),
        _placed(gzip.compress(bytes(10 << 20))),
        _load_amazon,
    ),
    Case(
        "registry-truncated-gz-placed-by-hand",
        DataError,
        (
            f"{{tmp}}/{AMAZON_GZ}: ",
            "cannot extract reviews_Beauty_5.json",
            "expected a complete gzip file",
            "delete it to download it again",
        ),
        _placed(_WHOLE[: len(_WHOLE) // 2]),
        _load_amazon,
    ),
    Case(
        "registry-bad-timeout",
        ConfigError,
        ("timeout=-1", "expected a positive number of seconds"),
        call=lambda tmp, target: registry.fetch("ml-1m", cache_dir=tmp / "cache", timeout=-1),
    ),
    Case(
        "registry-bad-max-ratio",
        ConfigError,
        ("max_ratio='100'", "expected a positive number"),
        call=lambda tmp, target: registry.fetch("ml-1m", cache_dir=tmp / "cache", max_ratio="100"),
    ),
]
