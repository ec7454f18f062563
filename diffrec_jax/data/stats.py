"""Summary statistics of interaction data, as plain JSON-serialisable dicts."""

from __future__ import annotations

import numpy as np

from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.data.sequences import SequenceDataset, count_repeats
from diffrec_jax.data.split import Split
from diffrec_jax.errors import ConfigError


def _summary(prefix: str, counts: np.ndarray, median: bool = True) -> dict:
    counts = np.asarray(counts)
    if counts.size == 0:
        counts = np.zeros(1, np.int64)
    d = {f"{prefix}_min": int(counts.min()), f"{prefix}_mean": float(counts.mean())}
    if median:
        d[f"{prefix}_median"] = float(np.median(counts))
    d[f"{prefix}_max"] = int(counts.max())
    return d


def _describe_matrix(m: InteractionMatrix) -> dict:
    lengths = m.user_lengths()
    cells = m.n_users * m.n_items
    return {
        "users": int(m.n_users),
        "items": int(m.n_items),
        "interactions": int(m.nnz),
        "density": float(m.nnz / cells) if cells else 0.0,
        "users_with_interactions": int(np.count_nonzero(lengths)),
        "items_with_interactions": int(np.count_nonzero(m.item_counts())),
        **_summary("user_length", lengths),
        **_summary("item_count", m.item_counts(), median=False),
        "timestamps": m.timestamps is not None,
    }


def _describe_sequences(s: SequenceDataset) -> dict:
    lengths = s.lengths()
    cells = s.n_users * s.n_items
    counts = np.bincount(s.items, minlength=s.n_items)
    repeats = count_repeats(s.offsets, s.items, s.n_items)
    pairs = len(s.items) - repeats
    return {
        "users": int(s.n_users),
        "items": int(s.n_items),
        "interactions": int(len(s.items)),
        "density": float(pairs / cells) if cells else 0.0,
        "repeated_events": repeats,
        "items_with_interactions": int(np.count_nonzero(counts)),
        **_summary("user_length", lengths),
        **_summary("item_count", counts, median=False),
        "timestamps": s.timestamps is not None,
    }


def describe(x: InteractionMatrix | Split | SequenceDataset) -> dict:
    """Summary statistics as a dict of plain Python numbers (JSON-serialisable).

    Density is the fraction of (user, item) cells holding at least one interaction, so it is
    at most 1: a pair repeated in a sequence or present in two parts of a split counts once
    (interactions count every event or row).

    For a matrix or sequence dataset: users, items, interactions, density, users/items with at
    least one interaction, per-user length min/mean/median/max (over all user rows, empty ones
    included), per-item count min/mean/max (over all item columns), and whether timestamps are
    present (sequences also count repeated (user, item) events). For a :class:`Split`: the
    overall users, items, interactions (train + valid + test) and density, and the description
    of each part under "train", "valid", "test".
    """
    if isinstance(x, InteractionMatrix):
        return _describe_matrix(x)
    if isinstance(x, SequenceDataset):
        return _describe_sequences(x)
    if isinstance(x, Split):
        parts = {p: _describe_matrix(getattr(x, p)) for p in ("train", "valid", "test")}
        total = sum(d["interactions"] for d in parts.values())
        cells = x.n_users * x.n_items
        pairs = x.train.binary().union(x.valid.binary()).union(x.test.binary()).nnz
        return {
            "name": x.name,
            "users": int(x.n_users),
            "items": int(x.n_items),
            "interactions": int(total),
            "density": float(pairs / cells) if cells else 0.0,
            **parts,
        }
    raise ConfigError(
        f"describe() takes an InteractionMatrix, Split or SequenceDataset, got {type(x).__name__}"
    )


def _fmt(v) -> str:
    if isinstance(v, bool) or not isinstance(v, float):
        return str(v)
    if v != 0 and abs(v) < 1e-2:
        return f"{v:.3e}"
    return f"{v:,.2f}" if abs(v) >= 1000 else f"{v:.4g}"


def format_description(d: dict, indent: int = 0) -> str:
    """Formats a :func:`describe` dict as aligned ``key: value`` lines (nested dicts indented)."""
    width = max((len(str(k)) for k in d), default=0)
    lines = []
    for k, v in d.items():
        if isinstance(v, dict):
            lines.append(" " * indent + f"{k}:")
            lines.append(format_description(v, indent + 2))
        else:
            value = f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else _fmt(v)
            lines.append(" " * indent + f"{str(k) + ':':<{width + 1}} {value}")
    return "\n".join(lines)
