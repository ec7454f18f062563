"""Memory estimates and data warnings shared by the loaders, the models and the training loop.

Anything sized by the data (an index array sized by the largest id, EASE's item-item Gram
matrix, a batch of dense rows) is estimated before it is allocated and compared with
:func:`available_memory`; the caller refuses with an error that names the value responsible
and the size it implies (:func:`format_bytes`).

Degenerate data that loads but cannot give meaningful results (a one-item catalogue, a single
user, every test target equal to its validation target, ...) is reported with
``warnings.warn(message, DataWarning)``: :class:`DataWarning` is a :class:`UserWarning`, so
Python prints it on the console once per place by default, and
``warnings.simplefilter("error", DataWarning)`` turns it into an exception.
"""

from __future__ import annotations

import os
import warnings


class DataWarning(UserWarning):
    """Degenerate data that loads but whose results cannot mean much (printed on the console
    through :mod:`warnings`; filter it with ``warnings.simplefilter(..., DataWarning)``)."""


def warn(message: str) -> None:
    """Issues `message` as a :class:`DataWarning` (attributed to the library's caller)."""
    warnings.warn(message, DataWarning, stacklevel=3)


def available_memory() -> int | None:
    """Bytes of memory available for new allocations: psutil's ``available`` when psutil is
    installed, else the free physical pages (``os.sysconf``); None when neither is known."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is in the constraints
        pass
    else:
        try:
            return int(psutil.virtual_memory().available)
        except Exception:  # pragma: no cover - no /proc or similar
            pass
    try:  # pragma: no cover - only without psutil
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover
        return None


def format_bytes(n: float) -> str:
    """``n`` bytes as a short human-readable size (binary units: KiB, MiB, GiB, TiB, ...)."""
    n = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if abs(n) < 1024 or unit == "EiB":
            return f"{n:.0f} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def exceeds_memory(nbytes: float, fraction: float = 1.0) -> tuple[bool, str]:
    """(whether `nbytes` exceeds `fraction` of :func:`available_memory`, a phrase describing
    the available memory for messages). Unknown available memory never exceeds."""
    avail = available_memory()
    if avail is None:
        return False, "available memory unknown"
    return nbytes > fraction * avail, f"{format_bytes(avail)} of memory available"
