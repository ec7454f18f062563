r"""Packed training batches: the real tokens of many short sequences in a few rows.

A "sequence" training batch is ``[B, L]`` left-padded histories; on short-sequence data most of
it is padding (Amazon Beauty: about 7 real tokens of L = 50), yet a Transformer step costs the
same for every position. A :class:`Packing` moves the real tokens of the batch into
``R < B`` rows of length L, several sequences per row, each sequence's tokens contiguous and in
order; attention is then restricted to the same sequence (``segment``) and to earlier columns,
so every per-token output equals the unpacked one (see ``tests/models/test_packing.py``).

The plan is computed inside the jitted step (next-fit over the sequences sorted by length, a
:func:`jax.lax.scan` over B scalars), so batch shapes, the training loop, sharding and
checkpoints do not change. ``R`` is static; a batch whose tokens do not fit (``fits`` False)
must be run unpacked: :func:`packed_or_unpacked` does that with :func:`jax.lax.cond`, so a
batch is never truncated.

Typical use inside a loss (``history``, ``targets`` [B, L] int, ``weights`` [B, L] float)::

    plan = packing.plan(history != pad, packing.rows(B, ratio))

    def loss_of(layout):  # layout: a Packing (packed) or packing.identity(B, L) (unpacked)
        h = packing.gather(history, layout, pad)  # [R or B, L]
        ...

    value = packing.packed_or_unpacked(plan, loss_of, B, L)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from diffrec_jax.errors import ConfigError

DEFAULT_RATIO = 0.2
"""Default `pack_ratio` of SASRec and ADRec: R = B / 5 packed rows. On the Amazon sets
(Beauty: 5.8 real tokens of 50 per example, Baby 4.9) every one of 50 random batches of 512 fit
in R = 103 rows; long-sequence data (ML-100K: 32.6 of 50) never fits and runs unpacked."""


class Packing(NamedTuple):
    """Where every real token of a ``[B, L]`` batch goes in ``[R, L]`` packed rows.

    Attributes:
      index: [R, L] int32 flat position ``b * L + l`` in the batch of the token at each slot;
        ``B * L`` (one past the end) at an empty slot.
      segment: [R, L] int32 example ``b`` of each slot, -1 at an empty slot.
      column: [R, L] int32 original column ``l`` of each slot (``L - 1`` at an empty slot), for
        positional embeddings counted in the unpacked window.
      slot: [B, L] int32 flat packed slot ``r * L + c`` of every token of the batch, ``R * L``
        (one past the end) at padding: the inverse of `index`, for :func:`take`.
      fits: [] bool, every real token has a slot (else the plan must not be used).
    """

    index: jax.Array  # type: ignore[assignment]  # shadows tuple.index, as intended
    segment: jax.Array
    column: jax.Array
    slot: jax.Array
    fits: jax.Array


def rows(batch_size: int, ratio: float) -> int:
    """Packed rows for a batch of `batch_size` sequences: ``ceil(ratio * batch_size)``; 0 when
    packing is off (`ratio` 0) or would not save rows (`ratio` >= 1)."""
    if not 0 <= ratio <= 1:
        raise ConfigError(f"pack_ratio={ratio!r}; expected 0 <= pack_ratio <= 1 (0: off)")
    n = math.ceil(ratio * batch_size)
    return n if 0 < n < batch_size else 0


SCORE_FACTOR = 1.5
"""Scoring packs into :func:`score_rows`: ``SCORE_FACTOR`` times the training rows. A scoring
history is one item (valid) or two (test) longer than a training example's (Beauty: 6.8 and 7.8
real tokens against 5.8), and evaluators score users in order, not shuffled: at the default
ratio every batch of the Amazon sets' valid and test histories fits in 0.3 B rows."""


def score_rows(batch_size: int, ratio: float) -> int:
    """Packed rows for scoring a batch of `batch_size` histories: :func:`rows` at
    ``min(1, SCORE_FACTOR * ratio)``."""
    return rows(batch_size, min(1.0, SCORE_FACTOR * ratio)) if ratio > 0 else 0


def identity(batch_size: int, length: int) -> Packing:
    """The unpacked layout as a :class:`Packing` (row b holds example b): [B, L] arrays."""
    b = jnp.arange(batch_size, dtype=jnp.int32)[:, None]
    col = jnp.arange(length, dtype=jnp.int32)[None, :]
    return Packing(
        index=b * length + col,
        segment=jnp.broadcast_to(b, (batch_size, length)),
        column=jnp.broadcast_to(col, (batch_size, length)),
        slot=b * length + col,
        fits=jnp.ones((), bool),
    )


def plan(valid: jax.Array, n_rows: int) -> Packing:
    """Packs the real tokens of a left-padded batch into `n_rows` rows.

    Next-fit decreasing: the sequences sorted by length (longest first, ties in batch order)
    fill rows one after the other; a sequence that does not fit in the current row starts the
    next one. Deterministic; a sequence never spans two rows.

    Args:
      valid: [B, L] bool; the real tokens of every row must be a suffix (left padding).
      n_rows: R, static.

    Returns:
      :class:`Packing` with [R, L] arrays.
    """
    b, length = valid.shape
    n = jnp.sum(valid, axis=1).astype(jnp.int32)  # [B]
    order = jnp.argsort(-n, stable=True)

    def place(carry, size):
        row, used = carry
        new_row = used + size > length
        row = jnp.where(new_row, row + 1, row)
        used = jnp.where(new_row, 0, used)
        return (row, used + size), (row, used)

    zero = jnp.zeros((), jnp.int32)
    _, (row_sorted, offset_sorted) = jax.lax.scan(place, (zero, zero), n[order])
    row = jnp.zeros(b, jnp.int32).at[order].set(row_sorted)
    offset = jnp.zeros(b, jnp.int32).at[order].set(offset_sorted)

    ex = jnp.broadcast_to(jnp.arange(b, dtype=jnp.int32)[:, None], (b, length))
    col = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32)[None, :], (b, length))
    within = col - (length - n[:, None])  # index of the token within its sequence
    slot = row[:, None] * length + offset[:, None] + within
    slot = jnp.where(valid, slot, n_rows * length)  # padding: out of range, dropped
    size = n_rows * length

    def scatter(fill, values):
        out = jnp.full(size, fill, jnp.int32)
        return out.at[slot.reshape(-1)].set(values.reshape(-1), mode="drop").reshape(n_rows, -1)

    fits = jnp.max(jnp.where(n > 0, row, 0)) < n_rows
    return Packing(
        index=scatter(b * length, ex * length + col),
        segment=scatter(-1, ex),
        column=scatter(length - 1, col),
        slot=jnp.minimum(slot, size),
        fits=fits,
    )


def gather(x: jax.Array, layout: Packing, fill: Any) -> jax.Array:
    """The values of a ``[B, L, ...]`` batch array at the slots of `layout`: ``[R, L, ...]``,
    `fill` at empty slots."""
    b, length = x.shape[:2]
    flat = x.reshape(b * length, *x.shape[2:])
    flat = jnp.concatenate([flat, jnp.full((1, *x.shape[2:]), fill, x.dtype)])
    return flat[layout.index]


def take(x: jax.Array, slots: jax.Array, fill: Any) -> jax.Array:
    """Values of packed ``[R, L, ...]`` outputs at flat `slots` (any shape S, e.g.
    ``layout.slot`` to unpack to ``[B, L, ...]``, ``layout.slot[:, -1]`` for the last position
    of every example): ``[*S, ...]``, `fill` at slot ``R * L`` (padding)."""
    r, length = x.shape[:2]
    flat = x.reshape(r * length, *x.shape[2:])
    flat = jnp.concatenate([flat, jnp.full((1, *x.shape[2:]), fill, x.dtype)])
    return flat[slots]


def packed_or_unpacked(
    packing: Packing | None,
    fn: Callable[[Packing], Any],
    batch_size: int,
    length: int,
) -> Any:
    """``fn(packing)`` if the packing fits, else ``fn(identity(batch_size, length))``.

    `fn` maps a layout to a pytree of equal structure and shapes for both layouts (a loss and
    its diagnostics). With `packing` None, the unpacked layout directly (no cond).
    """
    unpacked = identity(batch_size, length)
    if packing is None:
        return fn(unpacked)
    return jax.lax.cond(packing.fits, lambda: fn(packing), lambda: fn(unpacked))
