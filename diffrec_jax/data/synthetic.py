"""Synthetic interaction data with known structure, for tests and offline development.

Users and items have Gaussian latent factors; items also have a Zipf-like popularity bias
(``-popularity_exponent * log(rank)`` for a random popularity rank). :func:`synthetic_log` draws
every user's items without replacement with the Gumbel-top-k trick on
``logits = factor_scale * <u, v> / sqrt(n_factors) + popularity bias``, so that a collaborative
model clearly beats popularity ranking. :func:`synthetic_sequences` adds sequential structure:
the next item depends on the previous one through item-to-item transition logits.

Everything is vectorised numpy driven by one ``np.random.default_rng(seed)``; the same arguments
give the same data.
"""

from __future__ import annotations

import numpy as np

from diffrec_jax.data.interactions import InteractionLog
from diffrec_jax.data.sequences import SequenceDataset
from diffrec_jax.errors import ConfigError

MIN_LENGTH = 5
_CHUNK_ELEMENTS = 1 << 22  # users x items logits computed per chunk


def _check(n_users, n_items, mean_length, n_factors, popularity_exponent, **scales):
    for name, v in (("n_users", n_users), ("n_items", n_items), ("n_factors", n_factors)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ConfigError(f"{name}={v!r}; expected a positive integer")
    if n_items < 2 * MIN_LENGTH:
        raise ConfigError(f"n_items={n_items}; expected at least {2 * MIN_LENGTH}")
    if not (np.isfinite(mean_length) and MIN_LENGTH <= mean_length <= n_items / 2):
        raise ConfigError(
            f"mean_length={mean_length!r}; expected a number in "
            f"[{MIN_LENGTH}, n_items / 2 = {n_items / 2:g}]"
        )
    for name, v in (("popularity_exponent", popularity_exponent), *scales.items()):
        if not (np.isfinite(v) and v >= 0):
            raise ConfigError(f"{name}={v!r}; expected a finite non-negative number")


def _popularity_bias(rng: np.random.Generator, n_items: int, exponent: float) -> np.ndarray:
    """[n_items] log-popularity ``-exponent * log(rank)`` for a random rank permutation."""
    ranks = rng.permutation(n_items) + 1
    return -exponent * np.log(ranks)


def _lengths(rng: np.random.Generator, n: int, mean_length: float, max_length: int) -> np.ndarray:
    """[n] lognormal lengths (sigma 0.6) with mean about `mean_length`, in [5, max_length]."""
    sigma = 0.6
    mu = np.log(mean_length) - sigma**2 / 2
    return np.clip(np.rint(rng.lognormal(mu, sigma, n)), MIN_LENGTH, max_length).astype(np.int64)


def synthetic_log(
    n_users: int = 2000,
    n_items: int = 1000,
    mean_length: float = 30.0,
    n_factors: int = 8,
    popularity_exponent: float = 0.8,
    factor_scale: float = 2.5,
    with_ratings: bool = False,
    seed: int = 0,
) -> InteractionLog:
    """Draws an implicit-feedback log with latent structure and popularity skew.

    Every user has a lognormal number of distinct items (mean about `mean_length`, at least 5,
    at most n_items / 2), drawn without replacement with Gumbel-top-k on
    ``factor_scale * <u, v> / sqrt(n_factors) - popularity_exponent * log(rank)``. Each user's
    events get strictly increasing integer timestamps in random order of the drawn items; rows
    are sorted by (timestamp, user). Raw ids are the 0-based indices.

    Args:
      n_users, n_items: sizes.
      mean_length: approximate mean number of items per user.
      n_factors: latent dimension.
      popularity_exponent: Zipf exponent of the item popularity bias (0 = none).
      factor_scale: strength of the user-item affinity relative to the popularity bias.
      with_ratings: also draw 1-5 ratings that increase with the affinity.
      seed: the seed of the one numpy Generator used.

    Returns:
      An :class:`InteractionLog` with timestamps (and ratings if asked).
    """
    _check(n_users, n_items, mean_length, n_factors, popularity_exponent, factor_scale=factor_scale)
    rng = np.random.default_rng(seed)
    user_f = rng.standard_normal((n_users, n_factors)).astype(np.float32)
    item_f = rng.standard_normal((n_items, n_factors)).astype(np.float32)
    bias = _popularity_bias(rng, n_items, popularity_exponent).astype(np.float32)
    lengths = _lengths(rng, n_users, mean_length, n_items // 2)
    max_len = int(lengths.max())
    scale = np.float32(factor_scale / np.sqrt(n_factors))
    chosen = np.empty((n_users, max_len), np.int64)
    affinity = np.empty((n_users, max_len), np.float32)
    chunk = max(1, _CHUNK_ELEMENTS // n_items)
    for start in range(0, n_users, chunk):
        stop = min(n_users, start + chunk)
        aff = scale * (user_f[start:stop] @ item_f.T)
        noisy = aff + bias + rng.gumbel(size=aff.shape).astype(np.float32)
        top = np.argpartition(-noisy, max_len - 1, axis=1)[:, :max_len]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(noisy, top, 1), 1), 1)
        chosen[start:stop] = top
        affinity[start:stop] = np.take_along_axis(aff, top, 1)
    take = np.arange(max_len)[None, :] < lengths[:, None]
    users = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
    items = chosen[take]
    aff = affinity[take].astype(np.float64)
    # Random event order per user, strictly increasing integer timestamps.
    order = np.lexsort((rng.random(len(items)), users))
    items, aff = items[order], aff[order]
    gaps = rng.integers(1, 3600, len(items))
    starts = rng.integers(0, 10**7, n_users)
    first = np.cumsum(lengths) - lengths
    cum = np.cumsum(gaps)
    times = starts[users] + cum - np.repeat(cum[first] - gaps[first], lengths)
    ratings = None
    if with_ratings:
        z = (aff - aff.mean()) / max(aff.std(), 1e-12)
        ratings = np.clip(np.rint(3.0 + 1.2 * z + 0.5 * rng.standard_normal(len(z))), 1, 5)
    rows = np.lexsort((users, times))
    step = (
        f"synthetic_log(n_users={n_users}, n_items={n_items}, mean_length={mean_length}, "
        f"n_factors={n_factors}, popularity_exponent={popularity_exponent}, factor_scale="
        f"{factor_scale}, with_ratings={with_ratings}, seed={seed}): {len(items)} rows"
    )
    return InteractionLog(
        users[rows],
        items[rows],
        None if ratings is None else ratings[rows],
        times[rows].astype(np.float64),
        f"<synthetic seed={seed}>",
        (step,),
    )


def synthetic_sequences(
    n_users: int = 1000,
    n_items: int = 500,
    mean_length: float = 20.0,
    n_factors: int = 8,
    popularity_exponent: float = 0.8,
    transition_scale: float = 3.0,
    user_scale: float = 1.0,
    seed: int = 0,
) -> SequenceDataset:
    """Draws item sequences whose next item depends on the previous one.

    Items have two factor vectors, "out" a and "in" b. The first item of a user is drawn from
    ``user_scale * <u, b_j> / sqrt(k) + bias_j``; every next item j after item i from
    ``transition_scale * <a_i, b_j> / sqrt(k) + user_scale * <u, b_j> / sqrt(k) + bias_j``,
    without repeating an item within a sequence (Gumbel-max on the masked logits). Lengths are
    lognormal (mean about `mean_length`, at least 5). Timestamps are strictly increasing
    integers per user. Memory is O(n_users x n_items + n_items^2).

    Returns:
      A :class:`SequenceDataset` over all `n_items` items (ids = indices).
    """
    _check(
        n_users,
        n_items,
        mean_length,
        n_factors,
        popularity_exponent,
        transition_scale=transition_scale,
        user_scale=user_scale,
    )
    rng = np.random.default_rng(seed)
    k = np.sqrt(n_factors)
    user_f = rng.standard_normal((n_users, n_factors)).astype(np.float32)
    out_f = rng.standard_normal((n_items, n_factors)).astype(np.float32)
    in_f = rng.standard_normal((n_items, n_factors)).astype(np.float32)
    bias = _popularity_bias(rng, n_items, popularity_exponent).astype(np.float32)
    lengths = _lengths(rng, n_users, mean_length, n_items // 2)
    base = np.float32(user_scale / k) * (user_f @ in_f.T) + bias  # [n_users, n_items]
    transition = np.float32(transition_scale / k) * (out_f @ in_f.T)  # [n_items, n_items]
    seqs = np.full((n_users, int(lengths.max())), -1, np.int64)
    visited = np.zeros((n_users, n_items), bool)
    prev = None
    for t in range(seqs.shape[1]):
        active = np.flatnonzero(lengths > t)
        logits = base[active] + rng.gumbel(size=(len(active), n_items)).astype(np.float32)
        if prev is not None:
            logits += transition[prev[active]]
        logits[visited[active]] = -np.inf
        nxt = np.argmax(logits, axis=1)
        seqs[active, t] = nxt
        visited[active, nxt] = True
        if prev is None:
            prev = np.zeros(n_users, np.int64)
        prev[active] = nxt
    items = seqs[seqs >= 0]
    offsets = np.zeros(n_users + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    gaps = rng.integers(1, 3600, len(items))
    users = np.repeat(np.arange(n_users), lengths)
    cum = np.cumsum(gaps)
    first = offsets[:-1]
    times = (
        rng.integers(0, 10**7, n_users)[users] + cum - np.repeat(cum[first] - gaps[first], lengths)
    )
    step = (
        f"synthetic_sequences(n_users={n_users}, n_items={n_items}, mean_length="
        f"{mean_length}, n_factors={n_factors}, popularity_exponent={popularity_exponent}, "
        f"transition_scale={transition_scale}, user_scale={user_scale}, seed={seed}): "
        f"{len(items)} events"
    )
    return SequenceDataset(
        offsets,
        items,
        n_items,
        None,
        None,
        times.astype(np.float64),
        f"<synthetic sequences seed={seed}>",
        (step,),
    )
