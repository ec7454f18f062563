"""Readers for the interaction file formats the library supports.

Every reader validates everything it reads and raises :class:`~diffrec_jax.errors.DataError`
naming the file, the line (text files: 1-based, the header counts as line 1) or the row (``.npy``
files: 0-based array row) and what was expected. Nothing is dropped silently: a malformed line
is an error, never skipped. Trailing blank lines at the end of a text file are ignored; a blank
line anywhere else is an error (it has the wrong number of columns).

Text parsing has a vectorised fast path (the whole file is split at once and every column is
converted with one pass of ``int``/``float``); when it finds anything wrong, a slow line-by-line
pass locates the first offending line for the error message.

Formats:

- DiffRec release folders (:func:`load_diffrec_split`, :func:`load_diffrec`).
- ``user item`` sequence files, chronological per user (:func:`load_sequences`).
- RecBole atomic ``.inter`` files (:func:`load_recbole_inter`).
- MovieLens ``u.data``, ``ratings.dat`` and ``ratings.csv`` (:func:`load_movielens`).
- Any delimited file with a header of column names (:func:`load_csv`).
- JSON lines with string or integer ids: Amazon and Yelp reviews (:func:`load_json_lines`,
  :func:`load_amazon_reviews`, :func:`load_yelp_reviews`; ``.gz`` read directly).

Integer ids must be written ``[+]?[0-9]+`` (surrounding whitespace is accepted; ``"1.0"``,
``"1_000"`` and non-ASCII digits such as Arabic-Indic ones are not integers, although Python's
``int`` would read the last two) and must be non-negative and fit in int64. Ratings and
timestamps are decimal numbers written with the ASCII digits (no ``_``) and must be finite.
JSON objects must not repeat a key (Python's ``json`` would keep the last value silently).
"""

from __future__ import annotations

import datetime
import gzip
import json
import math
import os
import re
import stat
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from diffrec_jax.data import guards
from diffrec_jax.data.interactions import InteractionLog, InteractionMatrix
from diffrec_jax.data.sequences import SequenceDataset
from diffrec_jax.data.split import Split
from diffrec_jax.errors import ConfigError, DataError

PathLike = str | os.PathLike

# ASCII bytes that `str.split()` treats as whitespace (it also splits on some non-ASCII
# characters; the fast path detects that through a token count mismatch and falls back).
_ASCII_WHITESPACE = (9, 10, 11, 12, 13, 28, 29, 30, 31, 32)


# -- text tables ----------------------------------------------------------------------------------


def regular_file(path: PathLike) -> Path:
    """`path` if it names a regular file; a device such as /dev/zero, a FIFO or a socket would
    be read forever or block.

    Raises:
      DataError: naming the file and what it is.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as e:
        raise DataError(
            "cannot read file (file not found); expected a readable file", path=path
        ) from e
    except OSError as e:
        raise DataError(
            f"cannot read file ({e.strerror or e}); expected a readable file", path=path
        ) from e
    if not stat.S_ISREG(mode):
        kind = (
            "a directory"
            if stat.S_ISDIR(mode)
            else "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a device or socket"
        )
        raise DataError(f"is {kind}, not a regular file; expected a data file", path=path)
    return path


def _read_text(path: PathLike) -> str:
    """Reads a UTF-8 text file, with '\\r\\n' normalised to '\\n' and a leading BOM removed."""
    try:
        raw = regular_file(path).read_bytes()
    except OSError as e:
        raise DataError(
            f"cannot read file ({e.strerror or e}); expected a readable text file", path=path
        ) from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"not valid UTF-8 text (byte {e.start}); expected a UTF-8 text file",
            path=path,
            line=line,
        ) from e
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    return text


def _strip_trailing_blank_lines(text: str) -> str:
    while text:
        cut = text.rfind("\n")
        last = text[cut + 1 :]
        if last.strip():
            break
        if cut < 0:
            return ""
        text = text[:cut]
    return text


def _describe_sep(sep: str | None) -> str:
    names = {None: "whitespace", "\t": "tabs", ",": "commas", ";": "semicolons", " ": "spaces"}
    return names.get(sep, repr(sep))


def _short(line: str, limit: int = 80) -> str:
    return repr(line if len(line) <= limit else line[:limit] + "...")


class _Table(NamedTuple):
    header: list[str] | None
    columns: list[list[str]]  # n_cols lists of n_rows tokens
    first_line: int  # 1-based line number of the first data row


def _split_slow(
    body: str, sep: str | None, n_cols: int, path, first_line: int, what: str
) -> list[list[str]]:
    """Line-by-line split; raises on the first line with the wrong number of columns."""
    rows = []
    for k, line in enumerate(body.split("\n")):
        fields = line.split(sep)
        if len(fields) != n_cols:
            raise DataError(
                f"expected {n_cols} columns ({what}) separated by {_describe_sep(sep)}, "
                f"got {len(fields)}: {_short(line)}",
                path=path,
                line=first_line + k,
            )
        rows.append(fields)
    return [list(c) for c in zip(*rows, strict=True)]


def _split_fast(body: str, sep: str | None, n_cols: int) -> list[list[str]] | None:
    """Vectorised split; returns None whenever the slow path is needed (any anomaly)."""
    if sep is None:
        tokens = body.split()
        if len(tokens) % n_cols:
            return None
        n_lines = body.count("\n") + 1
        if len(tokens) != n_lines * n_cols:
            return None
        buf = np.frombuffer(body.encode("utf-8"), np.uint8)
        space = np.isin(buf, _ASCII_WHITESPACE)
        starts = ~space
        starts[1:] &= space[:-1]
        start_pos = np.flatnonzero(starts)
        nl_pos = np.flatnonzero(buf == 10)
        bounds = np.concatenate([[0], np.searchsorted(start_pos, nl_pos), [len(start_pos)]])
        if np.any(np.diff(bounds) != n_cols):
            return None
    else:
        if len(sep) != 1:
            # Multi-character separators ("::") are replaced by a single character absent
            # from the text.
            free = next((c for c in ("\t", "\x1f", "\x00", "|") if c not in body), None)
            if free is None:
                return None
            body, sep = body.replace(sep, free), free
        if not sep.isascii() or sep == "\n":
            return None
        n_lines = body.count("\n") + 1
        buf = np.frombuffer(body.encode("utf-8"), np.uint8)
        sep_pos = np.flatnonzero(buf == ord(sep))
        nl_pos = np.flatnonzero(buf == 10)
        bounds = np.concatenate([[0], np.searchsorted(sep_pos, nl_pos), [len(sep_pos)]])
        if np.any(np.diff(bounds) != n_cols - 1):
            return None
        tokens = body.replace(sep, "\n").split("\n")
        if len(tokens) != n_lines * n_cols:
            return None
    return [tokens[j::n_cols] for j in range(n_cols)]


def _read_table(
    path: PathLike, *, sep: str | None, n_cols: int | None, header: bool, what: str
) -> _Table:
    """Reads a delimited text table.

    Args:
      path: the file.
      sep: the column separator, or None for runs of whitespace.
      n_cols: expected number of columns; None to take it from the header.
      header: whether the first line is a header (it counts as line 1).
      what: a description of the expected columns, for error messages.
    """
    text = _strip_trailing_blank_lines(_read_text(path))
    if not text.strip():
        raise DataError("file is empty; expected " + what, path=path)
    head = None
    first_line = 1
    if header:
        cut = text.find("\n")
        head_line, text = (text, "") if cut < 0 else (text[:cut], text[cut + 1 :])
        head = [h.strip() for h in head_line.split(sep)]
        first_line = 2
        if not text.strip():
            raise DataError(
                "file has a header but no data rows; expected " + what, path=path, line=1
            )
        if n_cols is None:
            n_cols = len(head)
        elif len(head) != n_cols:
            raise DataError(
                f"header has {len(head)} columns, expected {n_cols} ({what}) "
                f"separated by {_describe_sep(sep)}: {_short(head_line)}",
                path=path,
                line=1,
            )
    assert n_cols is not None
    columns = _split_fast(text, sep, n_cols)
    if columns is None:
        columns = _split_slow(text, sep, n_cols, path, first_line, what)
    return _Table(head, columns, first_line)


_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)
_NUMBER = re.compile(
    r"\s*[+-]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|inf(inity)?|nan)\s*",
    re.ASCII | re.IGNORECASE,
)


def _plain(tokens: list[str]) -> bool:
    """Whether every token is ASCII without '_' (then Python's int/float read them as written:
    they accept digit-group underscores and non-ASCII digits, which the loaders refuse)."""
    joined = "".join(tokens)
    return joined.isascii() and "_" not in joined


def _parse_ids(tokens: list[str], field: str, path, first_line: int) -> np.ndarray:
    """Parses a column of non-negative integer ids to [n] int64 (ASCII digits only)."""
    try:
        if not _plain(tokens):
            raise ValueError
        ids = np.fromiter(map(int, tokens), np.int64, len(tokens))
    except (ValueError, OverflowError):
        for k, tok in enumerate(tokens):
            if not _INTEGER.fullmatch(tok):
                raise DataError(
                    f"{field} {tok!r} is not an integer; expected a non-negative integer id "
                    "written with the ASCII digits 0-9 only",
                    path=path,
                    line=first_line + k,
                ) from None
            value = int(tok)
            if not -(2**63) <= value < 2**63:
                raise DataError(
                    f"{field} {tok!r} does not fit in int64; expected a non-negative integer id "
                    "below 2**63",
                    path=path,
                    line=first_line + k,
                ) from None
        raise AssertionError("unreachable") from None  # pragma: no cover
    bad = np.flatnonzero(ids < 0)
    if bad.size:
        raise DataError(
            f"{field} {ids[bad[0]]} is negative; expected a non-negative integer id",
            path=path,
            line=first_line + int(bad[0]),
        )
    return ids


def _parse_floats(tokens: list[str], field: str, path, first_line: int) -> np.ndarray:
    """Parses a column of finite numbers to [n] float64."""
    try:
        if not _plain(tokens):
            raise ValueError
        values = np.fromiter(map(float, tokens), np.float64, len(tokens))
    except ValueError:
        for k, tok in enumerate(tokens):
            if not _NUMBER.fullmatch(tok):
                raise DataError(
                    f"{field} {tok!r} is not a number; expected a decimal number written with "
                    "the ASCII digits 0-9",
                    path=path,
                    line=first_line + k,
                ) from None
        raise AssertionError("unreachable") from None  # pragma: no cover
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise DataError(
            f"{field} {tokens[bad[0]].strip()!r} is not finite; expected a finite number",
            path=path,
            line=first_line + int(bad[0]),
        )
    return values


def _n_distinct(a: np.ndarray) -> int:
    s = np.sort(a)
    return int(len(s) > 0) + int(np.count_nonzero(s[1:] != s[:-1]))


def _log_from_columns(
    path,
    table: _Table,
    user: int,
    item: int,
    rating: int | None,
    timestamp: int | None,
    names: tuple[str, str, str, str],
    fmt: str,
) -> InteractionLog:
    cols, first = table.columns, table.first_line
    users = _parse_ids(cols[user], names[0], path, first)
    items = _parse_ids(cols[item], names[1], path, first)
    ratings = None if rating is None else _parse_floats(cols[rating], names[2], path, first)
    times = None if timestamp is None else _parse_floats(cols[timestamp], names[3], path, first)
    source = str(path)
    step = (
        f"loaded {len(users)} rows ({_n_distinct(users)} users, {_n_distinct(items)} items) "
        f"from {fmt} file {source}"
    )
    return InteractionLog(users, items, ratings, times, source, (step,))


# -- sequences ------------------------------------------------------------------------------------


def load_sequences(path: PathLike) -> SequenceDataset:
    """Reads a ``user item`` sequence file (ADRec / DiffuRec releases).

    One interaction per line, two whitespace-separated non-negative integer ids (1-based or
    any), no header. A user's lines are in chronological order; users may be interleaved, and
    each user's sequence keeps the order in which its lines appear. Raw ids are remapped to
    contiguous indices in sorted raw-id order (`user_ids` / `item_ids` keep the raw ids).

    Returns:
      A :class:`SequenceDataset` without timestamps.
    """
    table = _read_table(path, sep=None, n_cols=2, header=False, what="user item")
    users = _parse_ids(table.columns[0], "user id", path, table.first_line)
    items = _parse_ids(table.columns[1], "item id", path, table.first_line)
    log = InteractionLog(
        users,
        items,
        source=str(path),
        history=(f"loaded {len(users)} lines from sequence file {path}",),
    )
    return SequenceDataset.from_log(log)


# -- RecBole ---------------------------------------------------------------------------------------

_RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")


def load_recbole_inter(path: PathLike) -> InteractionLog:
    """Reads a RecBole atomic ``.inter`` file.

    Tab separated, with a typed header ``name:type`` per column, e.g.
    ``user_id:token  item_id:token  rating:float  timestamp:float``. Types must be one of
    token, token_seq, float, float_seq. The ``user_id`` and ``item_id`` columns are required and
    their values must be non-negative integers; ``rating`` and ``timestamp`` are optional and
    must be finite numbers. Other columns are ignored (the history says which).
    """
    table = _read_table(
        path, sep="\t", n_cols=None, header=True, what="RecBole columns from the header"
    )
    fields: dict[str, int] = {}
    for k, spec in enumerate(table.header or []):
        name, colon, kind = spec.partition(":")
        if not colon or not name:
            raise DataError(f"header column {k + 1} {spec!r} is not 'name:type'", path=path, line=1)
        if kind not in _RECBOLE_TYPES:
            raise DataError(
                f"header column {spec!r} has unknown type {kind!r}; expected one "
                f"of {', '.join(_RECBOLE_TYPES)}",
                path=path,
                line=1,
            )
        if name in fields:
            raise DataError(f"header names column {name!r} twice", path=path, line=1)
        fields[name] = k
    for required in ("user_id", "item_id"):
        if required not in fields:
            raise DataError(
                f"header has no {required!r} column; found {', '.join(table.header or [])}",
                path=path,
                line=1,
            )
    log = _log_from_columns(
        path,
        table,
        fields["user_id"],
        fields["item_id"],
        fields.get("rating"),
        fields.get("timestamp"),
        ("user_id", "item_id", "rating", "timestamp"),
        "RecBole .inter",
    )
    ignored = [n for n in fields if n not in ("user_id", "item_id", "rating", "timestamp")]
    if ignored:
        log = InteractionLog(
            log.users,
            log.items,
            log.ratings,
            log.timestamps,
            log.source,
            log.history + (f"ignored columns: {', '.join(ignored)}",),
        )
    return log


# -- delimited files with named columns ------------------------------------------------------------


def load_csv(
    path: PathLike,
    *,
    user_col: str,
    item_col: str,
    rating_col: str | None = None,
    timestamp_col: str | None = None,
    sep: str = ",",
) -> InteractionLog:
    """Reads a delimited file whose first line names the columns.

    Fields are split on `sep` literally (no quoting: a field containing the separator shows up
    as a wrong column count). Header names are compared after stripping surrounding whitespace.
    Columns other than the named ones are ignored.

    Args:
      path: the file.
      user_col, item_col: header names of the integer user and item id columns.
      rating_col, timestamp_col: header names of the optional numeric columns.
      sep: the column separator (any string; "\\t" for tab-separated files).
    """
    if not sep:
        raise ConfigError("sep must be a non-empty string")
    wanted = {
        "user_col": user_col,
        "item_col": item_col,
        "rating_col": rating_col,
        "timestamp_col": timestamp_col,
    }
    table = _read_table(path, sep=sep, n_cols=None, header=True, what="columns named in the header")
    header = table.header or []
    index = {}
    for key, name in wanted.items():
        if name is None:
            continue
        if name not in header:
            raise DataError(
                f"no column named {name!r} ({key}); the header split on {sep!r} has "
                f"{', '.join(repr(h) for h in header)}; expected a header naming every column "
                "given",
                path=path,
                line=1,
            )
        index[key] = header.index(name)
    return _log_from_columns(
        path,
        table,
        index["user_col"],
        index["item_col"],
        index.get("rating_col"),
        index.get("timestamp_col"),
        (user_col, item_col, str(rating_col), str(timestamp_col)),
        "delimited",
    )


# -- MovieLens ------------------------------------------------------------------------------------

_MOVIELENS_FORMATS = {
    "u.data": "u.data (ML-100K: tab separated user item rating timestamp, no header)",
    "ratings.dat": "ratings.dat (ML-1M/10M: user::item::rating::timestamp, no header)",
    "ratings.csv": "ratings.csv (ML-20M/25M: header userId,movieId,rating,timestamp)",
}
_MOVIELENS_ALIASES = {
    "100k": "u.data",
    "1m": "ratings.dat",
    "10m": "ratings.dat",
    "20m": "ratings.csv",
    "25m": "ratings.csv",
    "32m": "ratings.csv",
}


def load_movielens(path: PathLike, *, format: str | None = None) -> InteractionLog:
    """Reads a MovieLens ratings file.

    Args:
      path: the ratings file.
      format: "u.data", "ratings.dat" or "ratings.csv" (or a size alias: "100k", "1m", "10m",
        "20m", "25m", "32m"); by default inferred from the file name (``*.data``, ``*.dat``,
        ``*.csv``).

    Returns:
      An :class:`InteractionLog` with ratings and timestamps.
    """
    name = Path(path).name
    if format is None:
        for suffix, fmt in ((".data", "u.data"), (".dat", "ratings.dat"), (".csv", "ratings.csv")):
            if name.endswith(suffix):
                format = fmt
                break
        else:
            raise ConfigError(
                f"cannot infer the MovieLens format from file name {name!r}; "
                f"pass format= one of {', '.join(_MOVIELENS_FORMATS)}"
            )
    fmt = _MOVIELENS_ALIASES.get(format.lower(), format)
    if fmt not in _MOVIELENS_FORMATS:
        raise ConfigError(
            f"format={format!r} is not a MovieLens format; expected one of "
            f"{', '.join(_MOVIELENS_FORMATS)} or {', '.join(_MOVIELENS_ALIASES)}"
        )
    names = ("user id", "item id", "rating", "timestamp")
    if fmt == "ratings.csv":
        table = _read_table(
            path, sep=",", n_cols=4, header=True, what="userId,movieId,rating,timestamp"
        )
        expected = ["userId", "movieId", "rating", "timestamp"]
        if table.header != expected:
            raise DataError(
                f"header is {','.join(table.header or [])!r}, expected {','.join(expected)!r}",
                path=path,
                line=1,
            )
    else:
        sep = "\t" if fmt == "u.data" else "::"
        table = _read_table(
            path, sep=sep, n_cols=4, header=False, what="user item rating timestamp"
        )
    return _log_from_columns(path, table, 0, 1, 2, 3, names, f"MovieLens {fmt}")


# -- JSON lines (Amazon, Yelp reviews) -------------------------------------------------------------


def _open_binary(path: Path):
    """The file's bytes, gzip-decompressed when the name ends in .gz."""
    path = regular_file(path)
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _json_id(value, field: str, path: Path, line: int) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise DataError(
        f"field {field!r} is {value!r}; expected a non-empty string or integer id",
        path=path,
        line=line,
    )


def _json_number(value, field: str, path: Path, line: int) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"field {field!r} is {value!r}; expected a number", path=path, line=line)
    value = float(value)
    if not math.isfinite(value):
        raise DataError(
            f"field {field!r} is {value}; expected a finite number", path=path, line=line
        )
    return value


def _json_time(value, field: str, fmt: str | None, path: Path, line: int) -> float:
    if fmt is None:
        return _json_number(value, field, path, line)
    try:
        if not isinstance(value, str) or not value.isascii():
            raise ValueError  # strptime would read non-ASCII digits as ASCII ones
        moment = datetime.datetime.strptime(value, fmt)
    except (TypeError, ValueError):
        raise DataError(
            f"field {field!r} is {value!r}; expected a date like {fmt!r}", path=path, line=line
        ) from None
    return moment.replace(tzinfo=datetime.UTC).timestamp()


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """json ``object_pairs_hook`` that refuses a repeated key (json keeps the last silently)."""
    row: dict = {}
    for key, value in pairs:
        if key in row:
            raise _DuplicateKey(key)
        row[key] = value
    return row


def load_json_lines(
    path: PathLike,
    *,
    user_field: str,
    item_field: str,
    rating_field: str | None = None,
    timestamp_field: str | None = None,
    timestamp_format: str | None = None,
    what: str = "JSON lines",
) -> InteractionLog:
    """Reads one JSON object per line (gzip-compressed when the name ends in ``.gz``).

    Ids may be strings (Amazon's ``reviewerID``/``asin``, Yelp's ``user_id``/``business_id``) or
    integers; they are numbered 0..n-1 in sorted order of their string form (the history says
    so). Other fields are ignored. Trailing blank lines are ignored; any other blank line, a line
    that is not a JSON object, a missing field or a bad value is an error naming the line.

    Args:
      path: the file.
      user_field, item_field: the id fields.
      rating_field: a numeric field (finite), or None.
      timestamp_field: a numeric field (seconds), or a date string parsed with
        `timestamp_format` (``datetime.strptime``, taken as UTC), or None.
      what: the format's name for messages and the history.
    """
    path = Path(path)
    users: list[str] = []
    items: list[str] = []
    ratings: list[float] = []
    times: list[float] = []
    blank = None
    k = 0
    try:
        with _open_binary(path) as f:
            for k, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(
                        f"not valid UTF-8 text (byte {e.start} of the line); expected a UTF-8 "
                        f"{what} file",
                        path=path,
                        line=k,
                    ) from None
                if k == 1:
                    line = line.removeprefix("\ufeff")
                if not line.strip():
                    blank = blank or k
                    continue
                if blank is not None:
                    raise DataError(
                        "empty line; expected one JSON object per line", path=path, line=blank
                    )
                try:
                    row = json.loads(line, object_pairs_hook=_unique_keys)
                except _DuplicateKey as e:
                    raise DataError(
                        f"the JSON object has the key {e.key!r} twice; expected each key once "
                        f"(which value is meant is ambiguous): {_short(line.rstrip())}",
                        path=path,
                        line=k,
                    ) from None
                except json.JSONDecodeError as e:
                    raise DataError(
                        f"not valid JSON ({e.msg}, column {e.colno}): {_short(line.rstrip())}",
                        path=path,
                        line=k,
                    ) from None
                if not isinstance(row, dict):
                    raise DataError(
                        f"expected a JSON object, got {type(row).__name__}", path=path, line=k
                    )
                fields = [user_field, item_field, rating_field, timestamp_field]
                for field in fields:
                    if field is not None and field not in row:
                        raise DataError(
                            f"no field {field!r}; expected {what} objects with "
                            f"{', '.join(repr(f) for f in fields if f)}",
                            path=path,
                            line=k,
                        )
                users.append(_json_id(row[user_field], user_field, path, k))
                items.append(_json_id(row[item_field], item_field, path, k))
                if rating_field is not None:
                    ratings.append(_json_number(row[rating_field], rating_field, path, k))
                if timestamp_field is not None:
                    times.append(
                        _json_time(row[timestamp_field], timestamp_field, timestamp_format, path, k)
                    )
    except DataError:
        raise
    except FileNotFoundError as e:
        raise DataError("cannot read file (no such file)", path=path) from e
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"cannot read the file after line {k} ({e}); expected a complete "
            + ("gzip-compressed " if path.name.endswith(".gz") else "")
            + f"{what} file",
            path=path,
        ) from e
    if not users:
        raise DataError(f"file is empty; expected {what} objects, one per line", path=path)
    user_ids, user_codes = np.unique(np.array(users), return_inverse=True)
    item_ids, item_codes = np.unique(np.array(items), return_inverse=True)
    history = (
        f"loaded {len(users)} rows ({len(user_ids)} users, {len(item_ids)} items) from {what} "
        f"file {path}; {user_field} and {item_field} numbered in sorted string order",
    )
    return InteractionLog(
        user_codes.astype(np.int64),
        item_codes.astype(np.int64),
        np.array(ratings, np.float64) if rating_field is not None else None,
        np.array(times, np.float64) if timestamp_field is not None else None,
        str(path),
        history,
    )


def load_amazon_reviews(path: PathLike) -> InteractionLog:
    """Reads Amazon review JSON lines (McAuley's 2014 ``reviews_<Category>_5.json[.gz]``).

    Fields used: ``reviewerID`` (user), ``asin`` (item), ``overall`` (rating 1-5) and
    ``unixReviewTime`` (seconds). See :func:`load_json_lines`.
    """
    return load_json_lines(
        path,
        user_field="reviewerID",
        item_field="asin",
        rating_field="overall",
        timestamp_field="unixReviewTime",
        what="Amazon reviews",
    )


def load_yelp_reviews(path: PathLike) -> InteractionLog:
    """Reads the Yelp Open Dataset's ``yelp_academic_dataset_review.json``.

    Fields used: ``user_id``, ``business_id`` (item), ``stars`` (rating 1-5) and ``date``
    (``"%Y-%m-%d %H:%M:%S"``, taken as UTC). See :func:`load_json_lines`.
    """
    return load_json_lines(
        path,
        user_field="user_id",
        item_field="business_id",
        rating_field="stars",
        timestamp_field="date",
        timestamp_format="%Y-%m-%d %H:%M:%S",
        what="Yelp reviews",
    )


# -- DiffRec release ----------------------------------------------------------------------------


class DiffRecData(NamedTuple):
    """A DiffRec release folder.

    Attributes:
      split: the train / valid / test :class:`Split`.
      item_emb: [n_items, d] float32 item embeddings from ``item_emb.npy`` (the L-DiffRec
        clustering input), or None when the folder has none.
    """

    split: Split
    item_emb: np.ndarray | None


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, bytes of data present) from a .npy header, without reading the data."""
    fmt = np.lib.format
    with open(regular_file(path), "rb") as f:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(f)
        elif hasattr(fmt, "_read_array_header"):  # version 3.0 (utf-8 header)
            shape, _, dtype = fmt._read_array_header(f, version)
        else:  # pragma: no cover
            raise ValueError(f"unsupported .npy format version {version}")
        return shape, dtype, os.fstat(f.fileno()).st_size - f.tell()


def _load_npy(path: Path) -> np.ndarray:
    """Loads a numeric .npy array; never unpickles (object arrays are refused from the header,
    before any data is read) and never allocates more than the file holds. A file with bytes
    after the declared data (two arrays appended, a wrong header) is refused too."""
    try:
        shape, dtype, present = _npy_header(path)
        if dtype.hasobject:
            raise DataError(
                f"holds Python objects (dtype {dtype}); object arrays and pickled data are "
                "refused; expected a numeric .npy array",
                path=path,
            )
        needed = math.prod(shape) * dtype.itemsize
        if present < needed:
            raise DataError(
                f"not a readable .npy array: truncated (the header declares shape {shape} of "
                f"{dtype}, {needed} bytes of data; the file holds {present}); expected a "
                "complete .npy file",
                path=path,
            )
        if present > needed:
            raise DataError(
                f"not a readable .npy array: {present - needed} trailing bytes after the data "
                f"(the header declares shape {shape} of {dtype}, {needed} bytes of data; the "
                f"file holds {present}); expected exactly one .npy array and nothing after it",
                path=path,
            )
        a = np.load(path, allow_pickle=False)
    except DataError:
        raise
    except FileNotFoundError as e:
        raise DataError("file not found; expected a .npy file there", path=path) from e
    except (ValueError, OSError, EOFError) as e:
        raise DataError(
            f"not a readable .npy array ({e}); expected a numeric .npy file "
            "(object arrays and pickled data are refused)",
            path=path,
        ) from e
    if not isinstance(a, np.ndarray):
        raise DataError(f"expected a single .npy array, got {type(a).__name__}", path=path)
    return a


def _load_pairs(path: Path) -> np.ndarray:
    """Loads an (n, 2) non-negative integer array of (user, item) rows."""
    a = _load_npy(path)
    if a.dtype.kind not in "iu":
        raise DataError(
            f"dtype {a.dtype}, expected an integer array of (user, item) rows", path=path
        )
    if a.ndim != 2 or a.shape[1] != 2:
        raise DataError(f"shape {a.shape}, expected (n, 2) rows of (user, item)", path=path)
    if a.shape[0] == 0:
        raise DataError("no rows; expected (n, 2) rows of (user, item) with n > 0", path=path)
    if a.dtype.kind == "u" and a.max() >= 2**63:
        row = int(np.flatnonzero((a >= 2**63).any(axis=1))[0])
        raise DataError(f"id {a[row].max()} does not fit in int64", path=path, row=row)
    a = a.astype(np.int64)
    bad = np.flatnonzero((a < 0).any(axis=1))
    if bad.size:
        raise DataError(
            f"row {a[bad[0]].tolist()} has a negative id; expected 0-based ids",
            path=path,
            row=int(bad[0]),
        )
    return a


def _first_duplicate(keys: np.ndarray) -> tuple[int, int] | None:
    """(row of the first repeated key in row order, row of its first occurrence) or None."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    dup = np.flatnonzero(sk[1:] == sk[:-1])
    if not dup.size:
        return None
    # Among all repeats (later occurrences), the one with the smallest row.
    later = order[dup + 1]
    k = int(np.argmin(later))
    group_start = np.searchsorted(sk, sk[dup[k] + 1], side="left")
    return int(later[k]), int(order[group_start])


def _pair_keys(parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One int64 key per (user, item) row of every part, equal exactly when the rows are equal.

    Ids are first renumbered densely over all parts (so ``user * n_items + item`` cannot
    overflow int64 whatever the raw ids are: an id near 2**62 would otherwise wrap around and
    make distinct rows collide)."""
    both = np.concatenate(list(parts.values()))
    _, users = np.unique(both[:, 0], return_inverse=True)
    item_ids, items = np.unique(both[:, 1], return_inverse=True)
    keys = users.astype(np.int64) * np.int64(len(item_ids)) + items
    cuts = np.cumsum([len(a) for a in parts.values()])[:-1]
    return dict(zip(parts, np.split(keys, cuts), strict=True))


# Bytes per user and per item of the arrays sized by the largest id (the CSR row pointers,
# per-user flags and counts, per-item counts and one dense float32 row entry per item).
_BYTES_PER_USER = 8 + 8 + 1
_BYTES_PER_ITEM = 8 + 8 + 4


def _check_index_space(folder: Path, train: np.ndarray) -> None:
    """Refuses train ids so large that the arrays sized by them (largest id + 1) would not fit
    in memory: DiffRec ids are meant to be dense 0..n-1, so a huge id is an error."""
    path = folder / "train_list.npy"
    for axis, name, per in ((0, "user", _BYTES_PER_USER), (1, "item", _BYTES_PER_ITEM)):
        row = int(np.argmax(train[:, axis]))
        largest = int(train[row, axis])
        n = largest + 1
        nbytes = n * per
        too_big, avail = guards.exceeds_memory(nbytes, fraction=0.5)
        if too_big:
            distinct = _n_distinct(train[:, axis])
            raise DataError(
                f"{name} id {largest} implies {n:,} {name}s (ids are used as indices, sized by "
                f"the largest id + 1), whose index arrays would take {guards.format_bytes(nbytes)}"
                f" ({avail}), although train_list.npy has only {distinct:,} distinct {name}s; "
                f"expected dense {name} ids 0..n-1 as in DiffRec releases",
                path=path,
                row=row,
            )


def load_diffrec_split(folder: PathLike, *, row_order_as_time: bool = True) -> Split:
    """Reads the train / valid / test split of a DiffRec release folder.

    The folder holds ``train_list.npy``, ``valid_list.npy`` and ``test_list.npy``: integer
    arrays of shape (n, 2), rows (user, item), 0-based. The shape is (max train user + 1,
    max train item + 1), as in the original code. Checked: integer dtype and (n, 2) shape,
    no pickled data, non-empty, non-negative ids, no repeated row within a file, valid/test
    ids inside the train index space, every valid/test user has train interactions, and no
    (user, item) pair in two files. Errors name the file and the 0-based row.

    The release keeps every user's train rows in chronological order (T-DiffRec weights a
    user's train interactions by their position in ``train_list.npy``). With
    `row_order_as_time` (default), the train matrix's `timestamps` are the row indices of the
    pairs in ``train_list.npy``: an event order, not a time, but sorting a user's train entries
    by it recovers the file order. Valid and test carry no timestamps.

    Returns:
      A :class:`Split` of implicit (value 1) matrices named after the folder. See
      :func:`load_diffrec` for the item embeddings.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            "not a directory; expected a DiffRec release folder with "
            "train_list.npy, valid_list.npy, test_list.npy",
            path=folder,
        )
    parts = {p: _load_pairs(folder / f"{p}_list.npy") for p in ("train", "valid", "test")}
    train = parts["train"]
    _check_index_space(folder, train)
    n_users, n_items = int(train[:, 0].max()) + 1, int(train[:, 1].max()) + 1
    has_train = np.zeros(n_users, bool)
    has_train[train[:, 0]] = True
    seen: dict[str, np.ndarray] = {}
    all_keys = _pair_keys(parts)
    for part, a in parts.items():
        path = folder / f"{part}_list.npy"
        if part != "train":
            for axis, name, n in ((0, "user", n_users), (1, "item", n_items)):
                bad = np.flatnonzero(a[:, axis] >= n)
                if bad.size:
                    raise DataError(
                        f"{name} {a[bad[0], axis]} is outside the train index space (train "
                        f"has {n} {name}s, ids 0..{n - 1}); expected ids that appear in "
                        "train_list.npy",
                        path=path,
                        row=int(bad[0]),
                    )
            bad = np.flatnonzero(~has_train[a[:, 0]])
            if bad.size:
                raise DataError(
                    f"user {a[bad[0], 0]} has no train interaction; expected every "
                    f"{part} user to appear in train_list.npy",
                    path=path,
                    row=int(bad[0]),
                )
        keys = all_keys[part]
        dup = _first_duplicate(keys)
        if dup is not None:
            raise DataError(
                f"row {a[dup[0]].tolist()} repeats row {dup[1]}; expected each "
                "(user, item) pair once",
                path=path,
                row=dup[0],
            )
        for other, other_keys in seen.items():
            clash = np.flatnonzero(np.isin(keys, other_keys))
            if clash.size:
                raise DataError(
                    f"pair {a[clash[0]].tolist()} is also in {other}_list.npy; "
                    "expected train, valid and test to be disjoint",
                    path=path,
                    row=int(clash[0]),
                )
        seen[part] = keys
    shape = (n_users, n_items)
    order = np.arange(len(train), dtype=np.float64) if row_order_as_time else None
    mats = {
        p: InteractionMatrix.from_arrays(
            a[:, 0],
            a[:, 1],
            shape=shape,
            timestamps=order if p == "train" else None,
            source=str(folder / f"{p}_list.npy"),
        )
        for p, a in parts.items()
    }
    step = (
        f"loaded DiffRec split from {folder}: {n_users} users x {n_items} items, train "
        f"{len(train)} / valid {len(parts['valid'])} / test {len(parts['test'])} rows"
        + ("; train timestamps = row order in train_list.npy" if row_order_as_time else "")
    )
    return Split(mats["train"], mats["valid"], mats["test"], name=folder.name, history=(step,))


def load_item_embeddings(path: PathLike, n_items: int | None = None) -> np.ndarray:
    """Reads an [n_items, d] float item embedding ``.npy`` (e.g. DiffRec's ``item_emb.npy``).

    Returns:
      [n_items, d] float32. Checked: floating dtype, 2-D, finite, and n_items rows if given.
    """
    path = Path(path)
    a = _load_npy(path)
    if a.dtype.kind != "f":
        raise DataError(f"dtype {a.dtype}, expected a float array", path=path)
    if a.ndim != 2:
        raise DataError(f"shape {a.shape}, expected (n_items, d)", path=path)
    if n_items is not None and a.shape[0] != n_items:
        raise DataError(f"shape {a.shape}, expected {n_items} rows (one per item)", path=path)
    bad = np.flatnonzero(~np.isfinite(a).all(axis=1))
    if bad.size:
        raise DataError(
            "row has non-finite values; expected finite embeddings", path=path, row=int(bad[0])
        )
    return a.astype(np.float32)


def load_diffrec(folder: PathLike, *, row_order_as_time: bool = True) -> DiffRecData:
    """Reads a DiffRec release folder: the split (see :func:`load_diffrec_split`) and, when
    present, ``item_emb.npy``."""
    split = load_diffrec_split(folder, row_order_as_time=row_order_as_time)
    emb_path = Path(folder) / "item_emb.npy"
    item_emb = load_item_embeddings(emb_path, split.n_items) if emb_path.exists() else None
    return DiffRecData(split, item_emb)
