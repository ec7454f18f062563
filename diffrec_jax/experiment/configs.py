"""Experiment configurations as code: a Python file whose ``get_config()`` returns the config."""

from __future__ import annotations

import importlib.util
import traceback
from pathlib import Path
from typing import TypeVar

from diffrec_jax.errors import ConfigError

T = TypeVar("T")


def load_config(path: str | Path, expected: type[T]) -> T:
    """Loads ``get_config()`` from a Python file (configs as code) and checks its type.

    Args:
      path: the file (``--config``).
      expected: the config class ``get_config()`` must return (``RunConfig``, ``AuditConfig``).

    Raises:
      ConfigError: the file is missing, fails (its line is named), or get_config does not
        return an `expected`.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"--config={str(path)!r}: no such file; expected a Python file defining get_config()"
        )
    spec = importlib.util.spec_from_file_location(f"diffrec_jax_config_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(
            f"--config={str(path)!r}: not a Python file; expected a .py file defining get_config()"
        )
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        config = getattr(module, "get_config", lambda: None)()
    except Exception as e:  # the file's own error, reported as a configuration error
        if isinstance(e, SyntaxError):
            line = e.lineno
        else:
            frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == str(path)]
            line = frames[-1].lineno if frames else None
        where = f", line {line}" if line else ""
        raise ConfigError(
            f"--config={str(path)!r}{where}: {type(e).__name__}: {e}; expected a Python file "
            f"whose get_config() returns a {expected.__name__}"
        ) from e
    if not isinstance(config, expected):
        raise ConfigError(f"--config={str(path)!r}: get_config() must return a {expected.__name__}")
    return config
