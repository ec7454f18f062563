"""Results files: atomic JSON writes and the environment a result was computed in."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from diffrec_jax.errors import ConfigError

#: Distributions whose versions every results file records.
TRACKED_PACKAGES = (
    "diffrec_jax",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "chex",
    "absl-py",
    "numpy",
    "scipy",
)


def to_jsonable(obj: Any) -> Any:
    """Converts numpy/jax scalars and arrays, tuples, dataclasses and paths to JSON types.

    Non-finite floats become None (JSON has no NaN); nothing else is dropped.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__array__") and not isinstance(obj, (str, bytes)):
        arr = np.asarray(obj)
        return to_jsonable(arr.item() if arr.ndim == 0 else arr.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


def _umask() -> int:
    """The process umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Opens a temporary file beside `path`; on success fsyncs it and renames it onto `path`.

    A crash at any point leaves either the old file or no file, never a partial one. The file
    gets the permissions of a plainly created one (0666 minus the umask), not the temporary
    file's 0600.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.chmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Writes `obj` (converted by :func:`to_jsonable`) as indented JSON, atomically."""
    path = Path(path)
    with atomic_write(path) as f:
        json.dump(to_jsonable(obj), f, indent=2, sort_keys=False, allow_nan=False)
        f.write("\n")
    return path


def ensure_writable_dir(path: str | os.PathLike, flag: str = "output_dir") -> Path:
    """Creates `path` if needed and checks that files can be created in it.

    Raises:
      ConfigError: naming `flag` when the directory cannot be created or written.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ConfigError(
            f"--{flag}={str(path)!r} is not a writable directory: {e.strerror}; "
            "expected a directory this process can create files in"
        ) from e
    return path


def package_versions() -> dict[str, str | None]:
    """Installed version of every tracked package (None when not installed)."""
    out: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_revision() -> dict[str, Any] | None:
    """Commit and dirty flag of the git checkout holding this package, or None."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def environment() -> dict[str, Any]:
    """Everything needed to re-run a result on the same stack."""
    devices = jax.devices()
    return {
        "time_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax_backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "process_count": jax.process_count(),
        "packages": package_versions(),
        "git": git_revision(),
    }


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: `header`, a rule, then `rows`, columns left-aligned to their width."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]

    def line(row: Sequence[Any]) -> str:
        return "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True))

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])
