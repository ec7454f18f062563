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
is checked (complete, sha256), the ratings file is extracted from it (which also proves a
``.gz`` complete: a transfer cut short without a Content-Length header fails the gzip
end-of-stream or CRC check) and only then are both renamed into place (``os.replace``), so the
cache never holds a partial or unverified download; extraction is atomic the same way. Once
the ratings file is there, no request is made.

Checksums: the MovieLens sha256 sums are the ones published in TensorFlow Datasets' URL
checksum list (tensorflow_datasets/url_checksums/movielens.txt). No sha256 is published for
the Amazon files (fetched over https from snap.stanford.edu): their entries have
``sha256=None``, and such a file is downloaded only on an explicit opt-in,
``fetch(..., allow_unverified=True)`` or ``$DIFFREC_JAX_ALLOW_UNVERIFIED=1`` (for
``load_dataset`` and the scripts); without it a :class:`~diffrec_jax.errors.DataError` says so
before any request. An opted-in download is kept and `log` gets "checksum unknown: verify
manually" with its computed sha256, to check and pin. A file placed by hand needs no opt-in.

Limits: ``timeout`` (default one hour) is the deadline of the whole download, checked between
reads, and each read waits at most ``min(timeout, STALL_TIMEOUT)`` seconds, so a server that
trickles bytes cannot hold a download longer. Extraction is a stream that stops at
``max_ratio`` (default 100) times the archive's size or ``max_extracted`` bytes (default
16 GiB), whichever is smaller; past it a DataError names the file and the limit and nothing
is extracted (real ratings files are under 10 times their archive).

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
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, cast

from diffrec_jax.errors import ConfigError, DataError

CACHE_ENV = "DIFFREC_JAX_CACHE"
DEFAULT_CACHE = Path("~") / ".cache" / "diffrec_jax"
CHUNK = 1 << 20
ALLOW_UNVERIFIED_ENV = "DIFFREC_JAX_ALLOW_UNVERIFIED"
DEFAULT_TIMEOUT = 3600.0  # seconds for the whole download (ml-25m is 262 MB)
STALL_TIMEOUT = 60.0  # seconds one read may wait for data
DEFAULT_MAX_RATIO = 100.0  # extracted bytes per archive byte; real data: under 10
DEFAULT_MAX_EXTRACTED = 16 << 30  # bytes; the largest registry file, ml-25m ratings.csv, ~0.7 GB


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
_AMAZON_2014 = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
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


def _check_options(timeout: object, max_ratio: object = None, max_extracted: object = None) -> None:
    """ConfigError for a bad `timeout`, `max_ratio` or `max_extracted` argument."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ConfigError(
            f"timeout={timeout!r}; expected a positive number of seconds (the deadline of the "
            "whole download)"
        )
    if max_ratio is not None and (
        isinstance(max_ratio, bool) or not isinstance(max_ratio, int | float) or not max_ratio > 0
    ):
        raise ConfigError(
            f"max_ratio={max_ratio!r}; expected a positive number (at most this many extracted "
            "bytes per byte of the archive) or None"
        )
    if max_extracted is not None and (
        not isinstance(max_extracted, int) or isinstance(max_extracted, bool) or max_extracted <= 0
    ):
        raise ConfigError(
            f"max_extracted={max_extracted!r}; expected a positive number of bytes or None"
        )


def _allows_unverified(allow_unverified: bool) -> bool:
    return allow_unverified or os.environ.get(ALLOW_UNVERIFIED_ENV, "").strip().lower() in (
        "1",
        "true",
        "yes",
    )


def _require_opt_in(url: str, dest: Path, allow_unverified: bool) -> None:
    """DataError unless downloading a file without a sha256 was explicitly allowed."""
    if _allows_unverified(allow_unverified):
        return
    raise DataError(
        f"{url} has no published sha256, so its download cannot be verified and it is not "
        "downloaded without an explicit opt-in: pass allow_unverified=True (to "
        f"registry.fetch or registry.download) or set {ALLOW_UNVERIFIED_ENV}=1; the sha256 of "
        "what was downloaded is then printed so you can check and pin it. Nothing was "
        "requested; or, " + _manual_hint(url, dest)
    )


def _unverified_line(url: str, received: int, actual: str, dest: Path) -> str:
    return (
        f"checksum unknown: verify manually. {url} ({received} bytes) has sha256 {actual}; "
        f"kept at {dest}; once checked, pin it (sha256='{actual}') so that later downloads "
        "are verified"
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


def _sync(out: IO[bytes]) -> None:
    out.flush()
    os.fsync(out.fileno())


def _socket_of(response: object) -> socket.socket | None:
    """The socket under an http.client response (to bound each read by the deadline)."""
    raw = getattr(getattr(response, "fp", None), "raw", None)
    sock = getattr(raw, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _too_slow(url: str, timeout: float, received: int, dest: Path) -> DataError:
    return DataError(
        f"the download of {url} did not finish within timeout={timeout:g} s (the deadline of "
        f"the whole download; {received} bytes received); nothing was cached; pass a larger "
        "timeout=, or " + _manual_hint(url, dest)
    )


def _receive(url: str, out: IO[bytes], dest: Path, *, timeout: float) -> tuple[str, int]:
    """Writes the body of `url` to `out`, all of it within `timeout` seconds.

    Each read waits at most min(timeout, STALL_TIMEOUT) seconds and never past the deadline;
    the deadline is checked between reads, so a server that trickles bytes cannot hold the
    download longer than `timeout`.

    Returns:
      (hex sha256 of the body, its length).

    Raises:
      DataError: HTTP error, network failure, deadline passed, stalled or truncated transfer.
    """
    deadline = time.monotonic() + timeout
    stall = min(timeout, STALL_TIMEOUT)
    digest, received, announced, by_deadline = hashlib.sha256(), 0, None, False
    try:
        with urllib.request.urlopen(url, timeout=stall) as response:
            length = response.headers.get("Content-Length")
            announced = int(length) if length and length.strip().isdigit() else None
            sock = _socket_of(response)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _too_slow(url, timeout, received, dest)
                by_deadline = remaining < stall
                if sock is not None:
                    sock.settimeout(min(stall, remaining))
                chunk = response.read1(CHUNK)  # what has arrived: never waits for a full CHUNK
                if not chunk:
                    break
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
    except TimeoutError:
        if by_deadline or time.monotonic() >= deadline:
            raise _too_slow(url, timeout, received, dest) from None
        raise DataError(
            f"the download of {url} stalled: no data for {stall:g} s ({received} bytes "
            "received); nothing was cached; try again, or " + _manual_hint(url, dest)
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", None) or e
        raise DataError(
            f"cannot download {url} ({reason}); no network? Nothing was cached; "
            + _manual_hint(url, dest)
        ) from None
    if announced is not None and received != announced:
        raise DataError(
            f"incomplete download of {url}: received {received} of {announced} bytes "
            "(the connection closed early); nothing was cached; try again, or "
            + _manual_hint(url, dest)
        )
    return digest.hexdigest(), received


def _verify(url: str, actual: str, received: int, sha256: str | None) -> None:
    if sha256 is not None and actual != sha256.lower():
        raise DataError(
            f"checksum mismatch for {url}: expected sha256 {sha256}, got {actual} "
            f"({received} bytes); the download was discarded and nothing was cached"
        )


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None,
    timeout: float = DEFAULT_TIMEOUT,
    allow_unverified: bool = False,
    log: Callable[[str], None] = _stderr,
) -> Path:
    """Downloads `url` to `dest` atomically and returns `dest`.

    The body goes to a temporary file beside `dest`; it is renamed onto `dest` only when it is
    complete (as many bytes as the Content-Length header announced), arrived within `timeout`
    and its sha256 matches `sha256`. ``sha256=None`` needs ``allow_unverified=True`` (or
    ``$DIFFREC_JAX_ALLOW_UNVERIFIED=1``); the file is then kept and `log` gets "checksum
    unknown: verify manually" with the computed sha256, to check and pin.

    Args:
      timeout: seconds the whole download may take (each read also gives up after
        min(timeout, STALL_TIMEOUT) seconds without data).

    Raises:
      ConfigError: a bad `timeout`.
      DataError: no sha256 and no opt-in (before any request), HTTP error status, network
        failure (naming the URL and how to place the file by hand), deadline passed,
        truncated transfer or checksum mismatch; nothing is left at `dest`.
    """
    _check_options(timeout)
    dest = Path(dest)
    if sha256 is None:
        _require_opt_in(url, dest, allow_unverified)
    with _temporary_beside(dest) as (out, tmp):
        actual, received = _receive(url, out, dest, timeout=timeout)
        _sync(out)
        _verify(url, actual, received, sha256)
        os.replace(tmp, dest)
    if sha256 is None:
        log(_unverified_line(url, received, actual, dest))
    return dest


class _BadArchive(Exception):
    """Why an archive could not be extracted; the caller names the file or URL."""


def _extract(
    d: PublicDataset,
    archive: Path,
    dest: Path,
    *,
    max_ratio: float | None,
    max_extracted: int | None,
) -> None:
    """Writes `d.member` of `archive` (a zip or gzip file, as `d.filename` says) to `dest`
    atomically, decompressing as a stream that stops at the size limit.

    Raises:
      _BadArchive: missing member, corrupt or truncated archive (zip CRC, gzip end-of-stream
        marker and CRC are checked), or more than the limit: nothing is written to `dest`.
    """
    fmt = "zip" if d.filename.endswith(".zip") else "gzip"
    size = archive.stat().st_size
    limits = []
    if max_ratio is not None:
        limits.append((int(max_ratio * size), f"max_ratio={max_ratio:g} x the {size}-byte archive"))
    if max_extracted is not None:
        limits.append((max_extracted, f"max_extracted={max_extracted}"))
    limit, why = min(limits) if limits else (None, "")

    def too_large() -> _BadArchive:
        return _BadArchive(
            f"{d.member} decompresses to more than {limit} bytes ({why}); extraction stopped "
            "there: a decompression bomb, or not the expected file? If it is genuine, pass a "
            "larger max_ratio= or max_extracted= to registry.fetch"
        )

    with _temporary_beside(dest) as (out, tmp):
        try:
            with contextlib.ExitStack() as stack:
                src: IO[bytes]
                if fmt == "zip":
                    zf = stack.enter_context(zipfile.ZipFile(archive))
                    try:
                        info = zf.getinfo(d.member)
                    except KeyError:
                        listed = ", ".join(zf.namelist()[:8])
                        raise _BadArchive(
                            f"has no member {d.member!r} (it holds {listed}, ...); expected the "
                            f"{d.title} archive from {d.url}"
                        ) from None
                    if limit is not None and info.file_size > limit:
                        raise too_large()
                    src = stack.enter_context(zf.open(info))
                else:
                    src = stack.enter_context(cast(IO[bytes], gzip.open(archive, "rb")))
                written = 0
                while chunk := src.read(
                    CHUNK if limit is None else min(CHUNK, limit + 1 - written)
                ):
                    written += len(chunk)
                    if limit is not None and written > limit:
                        raise too_large()
                    out.write(chunk)
        except (
            zipfile.BadZipFile,
            EOFError,
            OSError,
            zlib.error,
            RuntimeError,
            NotImplementedError,
        ) as e:
            raise _BadArchive(
                f"cannot extract {d.member} ({e}); expected a complete {fmt} file"
            ) from None
        _sync(out)
        os.replace(tmp, dest)


def fetch(
    dataset: str | PublicDataset,
    *,
    cache_dir: str | os.PathLike | None = None,
    download_missing: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    allow_unverified: bool = False,
    max_ratio: float | None = DEFAULT_MAX_RATIO,
    max_extracted: int | None = DEFAULT_MAX_EXTRACTED,
    log: Callable[[str], None] = _stderr,
) -> Path:
    """The path of the dataset's ratings file, downloading and extracting it when needed.

    Order: the extracted file in ``<cache>/<name>/`` (no request at all); else the downloaded
    file there (placed by hand, or left by an interrupted extraction: checked against the
    published sha256, then extracted); else a download, extracted from its temporary file
    (which proves a ``.gz`` complete even when the server sent no Content-Length) before the
    download and the extracted file are renamed into the cache.

    Args:
      dataset: a registry name or alias, or a :class:`PublicDataset`.
      cache_dir: the cache root (default: $DIFFREC_JAX_CACHE, else ~/.cache/diffrec_jax).
      download_missing: False raises instead of downloading.
      timeout: seconds the whole download may take (each read also gives up after
        min(timeout, STALL_TIMEOUT) seconds without data).
      allow_unverified: allow downloading an entry with no published sha256 (the Amazon
        files); the computed sha256 is logged. ``$DIFFREC_JAX_ALLOW_UNVERIFIED=1`` does the
        same (for callers such as ``load_dataset``). A file placed by hand needs no opt-in.
      max_ratio: the extracted file may be at most this many times the archive's size
        (None: no ratio limit).
      max_extracted: the extracted file may be at most this many bytes (None: no limit).
      log: receives progress lines (stderr by default).

    Raises:
      ConfigError: unknown name, bad `timeout`, `max_ratio` or `max_extracted`.
      DataError: a manual-only dataset that is not in the cache (how to get it), no sha256
        and no opt-in, download failures (see :func:`download`), a cached file with the wrong
        checksum, a bad or truncated archive, an extracted file over the size limit.
    """
    _check_options(timeout, max_ratio, max_extracted)
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
    if archive.is_file():
        if d.sha256 is not None:
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
        try:
            _extract(d, archive, target, max_ratio=max_ratio, max_extracted=max_extracted)
        except _BadArchive as e:
            raise DataError(f"{e}; delete it to download it again", path=archive) from None
        return target
    if not download_missing:
        raise DataError(
            f"{d.title} is not in the cache ({archive}) and downloading is disabled; "
            + _manual_hint(d.url, archive)
        )
    if d.sha256 is None:
        _require_opt_in(d.url, archive, allow_unverified)
    log(f"downloading {d.title} from {d.url} to {archive}")
    with _temporary_beside(archive) as (out, tmp):
        actual, received = _receive(d.url, out, archive, timeout=timeout)
        _sync(out)
        _verify(d.url, actual, received, d.sha256)
        if archive != target:
            log(f"extracting {d.member} from the download")
            try:
                _extract(d, tmp, target, max_ratio=max_ratio, max_extracted=max_extracted)
            except _BadArchive as e:
                raise DataError(
                    f"the download of {d.url} was discarded: {e} (a transfer cut short without "
                    "a Content-Length header shows up only here); nothing was cached; try "
                    "again, or " + _manual_hint(d.url, archive)
                ) from None
        os.replace(tmp, archive)
    if d.sha256 is None:
        log(_unverified_line(d.url, received, actual, archive))
    return target


def cache_dir_for(d: PublicDataset, cache: str | os.PathLike | None = None) -> Path:
    """``<cache root>/<name>``: the folder of one dataset."""
    return cache_dir(cache) / d.name


def available() -> str:
    """A one-line list of the registry, for messages."""
    return ", ".join(names())
