"""The library's own error types.

Every error raised because of bad input (a malformed file, an inconsistent split, a contradictory
flag) is a :class:`DiffrecError`, so callers can catch the library's complaints without catching
programming errors. The message always names the file, line, row or field and what was expected.
"""

from __future__ import annotations

import os


class DiffrecError(ValueError):
    """Base class of every input error raised by diffrec_jax."""


class DataError(DiffrecError):
    """A data file or an in-memory dataset does not have the expected shape or content."""

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike | None = None,
        line: int | None = None,
        row: int | None = None,
    ):
        where = ""
        if path is not None:
            where = str(path)
            if line is not None:
                where += f", line {line}"
            if row is not None:
                where += f", row {row}"
            where += ": "
        elif row is not None:
            where = f"row {row}: "
        super().__init__(where + message)
        self.path = None if path is None else str(path)
        self.line = line
        self.row = row


class ConfigError(DiffrecError):
    """A configuration value, hyperparameter or flag is invalid or contradicts another one."""


class CheckpointError(DiffrecError):
    """A checkpoint on disk is missing parts, unreadable, or fails its checksums."""

    def __init__(self, message: str, *, path: str | os.PathLike | None = None):
        super().__init__(message if path is None else f"checkpoint {path}: {message}")
        self.path = None if path is None else str(path)
