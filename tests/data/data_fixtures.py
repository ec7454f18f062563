"""Helpers shared by the data tests (imported as a plain module; rootdir import mode)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diffrec_jax.data.interactions import InteractionMatrix

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def shared(relative: str) -> Path:
    """Path of a shared data file or folder; skips the test when it is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"shared data {relative} not available")
    return path


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def pairs(m: InteractionMatrix) -> set[tuple[int, int]]:
    users, items, _ = m.to_arrays()
    return set(zip(users.tolist(), items.tolist(), strict=True))


def entries(m: InteractionMatrix) -> dict[tuple[int, int], tuple[float, float | None]]:
    """{(user, item): (value, timestamp)} of every stored entry."""
    users, items, values = m.to_arrays()
    ts = [None] * len(users) if m.timestamps is None else m.timestamps.tolist()
    return {
        (u, i): (v, t)
        for u, i, v, t in zip(users.tolist(), items.tolist(), values.tolist(), ts, strict=True)
    }


def random_matrix(
    seed: int,
    n_users: int = 60,
    n_items: int = 40,
    density: float = 0.3,
    timestamps: bool = True,
    ties: bool = False,
) -> InteractionMatrix:
    """A random matrix with every user having >= 1 interaction, values and timestamps."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    users, items = np.nonzero(mask)
    values = rng.integers(1, 6, len(users)).astype(np.float64)
    ts = None
    if timestamps:
        ts = rng.integers(0, 20 if ties else 10**6, len(users)).astype(np.float64)
    return InteractionMatrix.from_arrays(
        users, items, shape=(n_users, n_items), values=values, timestamps=ts
    )
