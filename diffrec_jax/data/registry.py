"""Public datasets: download once into a cache, verify, extract, then load with the loaders.

``load_dataset("movielens-1m")`` or ``load_dataset("registry:ml-1m")`` calls :func:`fetch`,
which returns the cached ratings file (downloading and extracting it the first time) and loads
it with the matching loader (:func:`~diffrec_jax.data.loaders.load_movielens`,
:func:`~diffrec_jax.data.loaders.load_amazon_reviews`,
:func:`~diffrec_jax.data.loaders.load_yelp_reviews`) and the usual pipeline options.

==================  ==========================================================================
name (aliases)      file
==================  ==========================================================================
``ml-100k``         MovieLens 100K ``ml-100k.zip`` -> ``ml-100k/u.data``
``ml-1m``           MovieLens 1M ``ml-1m.zip`` -> ``ml-1m/ratings.dat``
``ml-20m``          MovieLens 20M ``ml-20m.zip`` -> ``ml-20m/ratings.csv``
``ml-25m``          MovieLens 25M ``ml-25m.zip`` -> ``ml-25m/ratings.csv``
``amazon-beauty``   Amazon 2014 5-core ``reviews_Beauty_5.json.gz`` (likewise ``amazon-baby``,
                    ``amazon-sports``, ``amazon-toys``)
``yelp``            manual only: the Yelp Open Dataset's terms of use forbid redistribution
                    and it is handed out only after accepting them, so it is never downloaded
                    automatically; place ``yelp_academic_dataset_review.json`` by hand
==================  ==========================================================================

MovieLens names also answer to ``movielens-100k``, ``movielens-1m``, ... .

Cache: ``cache_dir`` argument, else the ``DIFFREC_JAX_CACHE`` environment variable, else
``~/.cache/diffrec_jax``. A dataset lives in ``<cache>/<name>/``: the downloaded file under its
own name and the extracted ratings file. A download goes to a temporary file in that folder,
is checked (complete, sha256) and only then renamed into place (``os.replace``), so the cache
never holds a partial or unverified download; extraction is atomic the same way. Once the
ratings file is there, no request is made.

Checksums: the MovieLens sha256 sums are the ones published in TensorFlow Datasets' URL
checksum list (tensorflow_datasets/url_checksums/movielens.txt). No sha256 is published for
the Amazon files: their entries have ``sha256=None``; a download then prints "checksum
unknown: verify manually" with the computed sha256, and is kept.

Offline: any network failure raises :class:`~diffrec_jax.errors.DataError` naming the URL and
the exact cache path where the file can be placed by hand (it is verified and extracted on the
next call). Only the standard library (urllib) is used; no code path unpickles anything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from diffrec_jax.errors import ConfigError, DataError

CACHE_ENV = "DIFFREC_JAX_CACHE"
DEFAULT_CACHE = Path("~") / ".cache" / "diffrec_jax"
CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class PublicDataset:
    """One public dataset.

    Attributes:
      name: registry name (also the cache folder and the default dataset name).
      title: human-readable name.
      url: download URL, or None for datasets that must be downloaded by hand.
      filename: name of the downloaded file in the cache folder.
      member: the ratings file: a path inside the zip archive, the decompressed name of a
        ``.gz`` file, or `filename` itself when nothing is extracted.
      kind: the :func:`~diffrec_jax.data.datasets.load_dataset` kind that reads `member`.
      sha256: published sha256 of the downloaded file, or None when none is published.
      size: published size in bytes, or None.
      homepage: where the dataset and its terms are described.
      license: the terms in one line.
      aliases: other names accepted by :func:`get`.
      manual: for datasets that cannot be downloaded automatically, why and how to get them.
    """

    name: str
    title: str
    url: str | None
    filename: str
    member: str
    kind: str
    sha256: str | None
    size: int | None
    homepage: str
    license: str
    aliases: tuple[str, ...] = ()
    manual: str | None = None


_GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
_MOVIELENS_LICENSE = (
    "GroupLens research use terms: no commercial use, no redistribution without permission, "
    "cite F. M. Harper and J. A. Konstan, ACM TiiS 2015"
)
_AMAZON_2014 = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
_AMAZON_LICENSE = (
    "research use; cite R. He and J. McAuley, WWW 2016 and J. McAuley et al., SIGIR 2015"
)


def _movielens(size: str, member: str, sha256: str, n_bytes: int) -> PublicDataset:
    name = f"ml-{size}"
    return PublicDataset(
        name=name,
        title=f"MovieLens {size.upper()}",
        url=f"{_GROUPLENS}{name}.zip",
        filename=f"{name}.zip",
        member=f"{name}/{member}",
        kind="movielens",
        sha256=sha256,
        size=n_bytes,
        homepage=f"https://grouplens.org/datasets/movielens/{size}/",
        license=_MOVIELENS_LICENSE,
        aliases=(f"movielens-{size}",),
    )


def _amazon(category: str, short: str) -> PublicDataset:
    filename = f"reviews_{category}_5.json.gz"
    return PublicDataset(
        name=f"amazon-{short}",
        title=f"Amazon 2014 {category.replace('_', ' ')} 5-core reviews",
        url=_AMAZON_2014 + filename,
        filename=filename,
        member=filename.removesuffix(".gz"),
        kind="amazon",
        sha256=None,  # none published
        size=None,
        homepage="https://jmcauley.ucsd.edu/data/amazon/",
        license=_AMAZON_LICENSE,
        aliases=(f"amazon-{category.lower().replace('_', '-')}",)
        if category.lower() != short
        else (),
    )


YELP_MANUAL = (
    "the Yelp Open Dataset is handed out only by Yelp, to users who accept its Dataset Terms of "
    "Use, which forbid redistributing it, so no code may download it for you: download it "
    "yourself from https://www.yelp.com/dataset, extract yelp_academic_dataset_review.json "
    "from the archive and place it at {path}"
)

DATASETS: dict[str, PublicDataset] = {
    d.name: d
    for d in (
        # sha256 and sizes: TensorFlow Datasets, tensorflow_datasets/url_checksums/movielens.txt
        _movielens(
            "100k",
            "u.data",
            "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
            4924029,
        ),
        _movielens(
            "1m",
            "ratings.dat",
            "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
            5917549,
        ),
        _movielens(
            "20m",
            "ratings.csv",
            "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
            198702078,
        ),
        _movielens(
            "25m",
            "ratings.csv",
            "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
            261978986,
        ),
        _amazon("Beauty", "beauty"),
        _amazon("Baby", "baby"),
        _amazon("Sports_and_Outdoors", "sports"),
        _amazon("Toys_and_Games", "toys"),
        PublicDataset(
            name="yelp",
            title="Yelp Open Dataset reviews",
            url=None,
            filename="yelp_academic_dataset_review.json",
            member="yelp_academic_dataset_review.json",
            kind="yelp",
            sha256=None,
            size=None,
            homepage="https://www.yelp.com/dataset",
            license="Yelp Dataset Terms of Use: no redistribution; obtained from Yelp only",
            manual=YELP_MANUAL,
        ),
    )
}


def names() -> list[str]:
    """Registry names, in registry order."""
    return list(DATASETS)


def _aliases() -> dict[str, str]:
    out = {name: name for name in DATASETS}
    for d in DATASETS.values():
        out.update({alias: d.name for alias in d.aliases})
    return out


def lookup(name: str) -> PublicDataset | None:
    """The dataset named `name` (or one of its aliases), or None."""
    target = _aliases().get(name)
    return None if target is None else DATASETS[target]


def get(name: str) -> PublicDataset:
    """The dataset named `name` (or one of its aliases).

    Raises:
      ConfigError: unknown name (the message lists the registry).
    """
    d = lookup(name)
    if d is None:
        raise ConfigError(
            f"unknown public dataset {name!r}; expected one of {', '.join(sorted(_aliases()))}"
        )
    return d


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """The cache root: `cache`, else $DIFFREC_JAX_CACHE, else ~/.cache/diffrec_jax."""
    if cache is None:
        cache = os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    return Path(cache).expanduser()


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _manual_hint(url: str, dest: Path) -> str:
    return (
        f"to use it offline, download {url} on a machine with network access and place it at "
        f"{dest} (the cache folder comes from cache_dir= or ${CACHE_ENV}); it is verified and "
        "extracted on the next call"
    )


@contextlib.contextmanager
def _temporary_beside(dest: Path):
    """A temporary file in dest's folder, removed unless the caller renamed it away."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f, Path(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None,
    timeout: float = 60.0,
    log: Callable[[str], None] = _stderr,
) -> Path:
    """Downloads `url` to `dest` atomically and returns `dest`.

    The body goes to a temporary file beside `dest`; it is renamed onto `dest` only when it is
    complete (as many bytes as the Content-Length header announced) and its sha256 matches
    `sha256`. With ``sha256=None`` the file is kept and `log` gets "checksum unknown: verify
    manually" with the computed sha256.

    Raises:
      DataError: HTTP error status, network failure (naming the URL and how to place the file
        by hand), truncated transfer or checksum mismatch; nothing is left at `dest`.
    """
    dest = Path(dest)
    with _temporary_beside(dest) as (out, tmp):
        digest, received, announced = hashlib.sha256(), 0, None
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                announced = int(length) if length and length.strip().isdigit() else None
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
        except urllib.error.HTTPError as e:
            e.close()
            raise DataError(
                f"cannot download {url}: HTTP {e.code} {e.reason}; nothing was cached; "
                + _manual_hint(url, dest)
            ) from None
        except http.client.IncompleteRead as e:
            raise DataError(
                f"incomplete download of {url}: the connection closed after "
                f"{received + len(e.partial)} bytes, {e.expected} more were expected; nothing "
                "was cached; try again, or " + _manual_hint(url, dest)
            ) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", None) or e
            raise DataError(
                f"cannot download {url} ({reason}); no network? Nothing was cached; "
                + _manual_hint(url, dest)
            ) from None
        out.flush()
        os.fsync(out.fileno())
        if announced is not None and received != announced:
            raise DataError(
                f"incomplete download of {url}: received {received} of {announced} bytes "
                "(the connection closed early); nothing was cached; try again, or "
                + _manual_hint(url, dest)
            )
        actual = digest.hexdigest()
        if sha256 is None:
            log(
                f"checksum unknown: verify manually. {url} ({received} bytes) has sha256 "
                f"{actual}; kept at {dest}"
            )
        elif actual != sha256.lower():
            raise DataError(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {actual} "
                f"({received} bytes); the download was discarded and nothing was cached"
            )
        os.replace(tmp, dest)
    return dest


def _extract(d: PublicDataset, archive: Path, dest: Path) -> None:
    """Writes `d.member` of `archive` to `dest` atomically."""
    with _temporary_beside(dest) as (out, tmp):
        try:
            if archive.name.endswith(".zip"):
                with zipfile.ZipFile(archive) as zf:
                    try:
                        info = zf.getinfo(d.member)
                    except KeyError:
                        listed = ", ".join(zf.namelist()[:8])
                        raise DataError(
                            f"has no member {d.member!r} (it holds {listed}, ...); expected the "
                            f"{d.title} archive from {d.url}; delete it to download it again",
                            path=archive,
                        ) from None
                    with zf.open(info) as src:
                        shutil.copyfileobj(src, out, CHUNK)
            else:
                with gzip.open(archive, "rb") as src:
                    shutil.copyfileobj(src, out, CHUNK)
        except DataError:
            raise
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as e:
            fmt = "zip" if archive.name.endswith(".zip") else "gzip"
            raise DataError(
                f"cannot extract {d.member} ({e}); expected a complete {fmt} file; delete it to "
                "download it again",
                path=archive,
            ) from None
        out.flush()
        os.fsync(out.fileno())
        os.replace(tmp, dest)


def fetch(
    dataset: str | PublicDataset,
    *,
    cache_dir: str | os.PathLike | None = None,
    download_missing: bool = True,
    timeout: float = 60.0,
    log: Callable[[str], None] = _stderr,
) -> Path:
    """The path of the dataset's ratings file, downloading and extracting it when needed.

    Order: the extracted file in ``<cache>/<name>/`` (no request at all); else the downloaded
    file there (placed by hand, or left by an interrupted extraction: checked against the
    published sha256, then extracted); else a download (:func:`download`), then extraction.

    Args:
      dataset: a registry name or alias, or a :class:`PublicDataset`.
      cache_dir: the cache root (default: $DIFFREC_JAX_CACHE, else ~/.cache/diffrec_jax).
      download_missing: False raises instead of downloading.
      timeout: seconds of network inactivity before giving up.
      log: receives progress lines (stderr by default).

    Raises:
      ConfigError: unknown name.
      DataError: a manual-only dataset that is not in the cache (how to get it), download
        failures (see :func:`download`), a cached file with the wrong checksum, a bad archive.
    """
    d = get(dataset) if isinstance(dataset, str) else dataset
    folder = cache_dir_for(d, cache_dir)
    target = folder / d.member
    if target.is_file():
        return target
    if d.manual is not None or d.url is None:
        raise DataError(
            f"{d.title} is not in the cache and cannot be downloaded automatically: "
            + (d.manual or "no download URL").format(path=target)
        )
    archive = folder / d.filename
    if not archive.is_file():
        if not download_missing:
            raise DataError(
                f"{d.title} is not in the cache ({archive}) and downloading is disabled; "
                + _manual_hint(d.url, archive)
            )
        log(f"downloading {d.title} from {d.url} to {archive}")
        download(d.url, archive, sha256=d.sha256, timeout=timeout, log=log)
    elif d.sha256 is not None:
        actual = sha256_of(archive)
        if actual != d.sha256:
            raise DataError(
                f"sha256 {actual} does not match the published {d.sha256} of {d.url}; "
                "expected the original file: delete it to download it again",
                path=archive,
            )
    if archive == target:
        return target
    log(f"extracting {d.member} from {archive}")
    _extract(d, archive, target)
    return target


def cache_dir_for(d: PublicDataset, cache: str | os.PathLike | None = None) -> Path:
    """``<cache root>/<name>``: the folder of one dataset."""
    return cache_dir(cache) / d.name


def available() -> str:
    """A one-line list of the registry, for messages."""
    return ", ".join(names())
